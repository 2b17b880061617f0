"""Secrets and trust, shared by the mail connections and OAuth2 (layer 1: below both).

* :mod:`~mailingest.security.keystore`   secrets outside credentials.conf: the keyring, 0600 JSON files
* :mod:`~mailingest.security.tlsconfig`  TLS contexts honouring sr3's ``tlsRigour``
"""
