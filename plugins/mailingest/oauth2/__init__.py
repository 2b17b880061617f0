"""OAuth2 for IMAP and POP3 logins (layer 2: uses :mod:`mailingest.security`, knows no mailbox).

* :mod:`~mailingest.oauth2.config`    provider presets, the flow's settings, an account's client
* :mod:`~mailingest.oauth2.endpoint`  requests to the authorization server (urllib.request)
* :mod:`~mailingest.oauth2.tokens`    :class:`~mailingest.oauth2.tokens.TokenSource`: refresh -> access tokens
* :mod:`~mailingest.oauth2.flows`     the first refresh token: loopback and device flows (``mailingest oauth2``)
* :mod:`~mailingest.oauth2.apponly`   :class:`~mailingest.oauth2.apponly.AppTokenSource`: app-only access tokens
  (Entra client credentials, Google service accounts)
* :mod:`~mailingest.oauth2.assertions` keys, certificates and signed JWT assertions (RFC 7523)
"""
