"""The protocol edge: mail accounts and IMAP/POP3 sessions (layer 3).

Library errors (imapclient, imaplib, poplib, ssl, socket) become :mod:`mailingest.errors` here, and
what a server's refusal means is read from its response code here (:mod:`~mailingest.mailbox.replies`).

* :mod:`~mailingest.mailbox.account`           a mail URL + credentials -> :class:`~mailingest.mailbox.account.MailAccount`
* :mod:`~mailingest.mailbox.credentials_file`  sr3's credentials.conf, checked line by line, re-read on change
* :mod:`~mailingest.mailbox.refs`              message identity: what a notice names, the relPath
* :mod:`~mailingest.mailbox.connection`        settings shared by every connection; socket/TLS errors
* :mod:`~mailingest.mailbox.auth`              logging in: password, bearer token, OAuth2
* :mod:`~mailingest.mailbox.sasl`              XOAUTH2 and OAUTHBEARER messages (pure)
* :mod:`~mailingest.mailbox.protocol`          the ``Mailbox`` protocol callers speak, and its capabilities
* :mod:`~mailingest.mailbox.base`              what IMAP and POP3 mailboxes share
* :mod:`~mailingest.mailbox.imap`              IMAP through imapclient, UID commands only
* :mod:`~mailingest.mailbox.pop3`              POP3 through poplib, UIDL identity
* :mod:`~mailingest.mailbox.replies`           IMAP and POP3 response codes -> exception types (pure)
* :mod:`~mailingest.mailbox.factory`           ``new_mailbox``: the right class for an account
* :mod:`~mailingest.mailbox.kept`              ``KeptSession``: one account's session, kept between calls
* :mod:`~mailingest.mailbox.sessionlimit`      a server refusing one more session for the account
* :mod:`~mailingest.mailbox.brokerlocks`       locks and notes on the shared AMQP broker (exclusive queues)
* :mod:`~mailingest.mailbox.budget`            ``mailSessionMax``: the sessions an account holds at once, across hosts
"""
