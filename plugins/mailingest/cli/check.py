"""``mailingest check [URL]``: connect and log in exactly as the poll and download do, then report.

Reports the TLS version and the server certificate's subject, how the login went, the folders
with their message and unseen counts, and whether IDLE is offered.  On failure it prints one
line saying what is wrong and what to try, and exits 1.

Settings come from an sr3 config (``--config poll/mail`` reads pollUrl and every mail* option,
plus default.conf and credentials.conf, as sr3 would) and/or from flags, which win.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

#: option name -> flag, to phrase advice for the command line
FLAGS = {
    "mailCaFile": "--ca-file", "tlsRigour": "--tls-rigour", "mailAllowPlaintext": "--allow-plaintext",
    "mailOAuth2Provider": "--oauth2-provider", "mailOAuth2ClientId": "--oauth2-client-id",
    "mailOAuth2ClientSecretFile": "--oauth2-client-secret-file", "mailOAuth2TokenUrl": "--oauth2-token-url",
    "mailOAuth2Scope": "--oauth2-scope", "mailOAuth2Tenant": "--oauth2-tenant",
    "mailOAuth2Mechanism": "--oauth2-mechanism", "mailOAuth2Flow": "--oauth2-flow",
    "mailOAuth2CertificateFile": "--oauth2-certificate-file", "mailOAuth2PrivateKeyFile": "--oauth2-private-key-file",
    "mailOAuth2ServiceAccountFile": "--oauth2-service-account-file", "mailOAuth2Cloud": "--oauth2-cloud",
}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "check", help="connect to a mailbox, log in and report TLS, folders and IDLE",
        description="Check a mail account the way mailingest.poll connects to it (docs/authentication.md).")
    p.add_argument("url", nargs="?", help="imap[s]://USER@HOST[:PORT]/ or pop[s]://... (default: the config's pollUrl)")
    p.add_argument("--config", metavar="COMPONENT/NAME", help="read options from an sr3 config, e.g. poll/mail")
    for option, flag in FLAGS.items():
        if option == "mailAllowPlaintext":
            p.add_argument(flag, dest=option, action="store_true", default=None,
                           help="log in without TLS when the server offers no STARTTLS")
        else:
            p.add_argument(flag, dest=option, metavar="VALUE", help=f"like the sr3 option {option}")
    p.add_argument("--timeout", type=float, default=None, help="seconds for connect and each read")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mailingest.errors import MailError

    try:
        options = _options(args)
        report = _check(options)
    except MailError as exc:
        print(f"mailingest check: {_for_cli(str(exc))}", file=sys.stderr)
        return 1
    print("\n".join(report))
    return 0


def _for_cli(text: str) -> str:
    for option, flag in FLAGS.items():
        text = text.replace(f"set {option}", f"set {option} ({flag})").replace(
            f"{option} lax", f"{option} lax ({flag} lax)").replace(f"{option} on", f"{option} on ({flag})")
    return text


def _options(args: argparse.Namespace) -> Any:
    """sr3 options: the config file's (or defaults), with the flags applied."""
    import sarracenia.config

    from mailingest.errors import ConfigError
    from mailingest.mailbox.credentials_file import sr3_default_config
    from mailingest.settings import declare_connection_options

    options = sr3_default_config()
    if args.config:
        name = args.config if args.config.endswith(".conf") else args.config + ".conf"
        path = args.config if os.path.isfile(args.config) else os.path.join(
            sarracenia.config.get_user_config_dir(), name)
        if not os.path.isfile(path):
            raise ConfigError(f"no sr3 config {args.config} ({path} does not exist)")
        component = os.path.basename(os.path.dirname(os.path.abspath(path)))
        # sr3's parser needs to know which config it reads (a subscriber's subtopic line
        # resolves the queue name from them), as sr3's own one_config() sets them.
        options.override({"component": component, "config": os.path.splitext(os.path.basename(path))[0]})
        options.parse_file(path, component)
    for option in FLAGS:
        value = getattr(args, option)
        if value is not None:
            setattr(options, option, value)
    if args.timeout is not None:
        options.timeout = args.timeout
    if args.url:
        options.pollUrl = args.url
    declare_connection_options(options)
    if not getattr(options, "pollUrl", None):
        raise ConfigError("no URL: give one (imaps://USER@HOST/) or --config with a pollUrl")
    return options


def _check(options: Any) -> list[str]:
    from mailingest.mailbox.account import resolve_account
    from mailingest.mailbox.credentials_file import CredentialsFile
    from mailingest.mailbox.factory import new_mailbox
    from mailingest.settings import connection_settings

    settings = connection_settings(options)
    account = resolve_account(options.pollUrl, CredentialsFile.of(options).database(), settings.oauth2)
    mailbox: Any = new_mailbox(account, settings)  # a diagnosis: reads the protocol's own socket and folders
    mailbox.connect()
    try:
        lines = [account.display]
        lines += _tls_lines(mailbox, settings)
        lines.append(f"  login:    ok ({_login_kind(account)})")
        if account.protocol == "imap":
            lines.append(f"  IDLE:     {'offered' if mailbox.supports_idle() else 'not offered'}")
            lines.append("  folders:")
            lines += [f"    {name:<30} {total:>7} messages {unseen:>7} unseen"
                      for name, total, unseen in _folders(mailbox)]
        else:
            count, size = mailbox.conn.stat()
            lines.append("  IDLE:     not applicable (POP3)")
            lines.append(f"  maildrop: {count} messages, {size} bytes (POP3 has no unseen flag)")
    finally:
        mailbox.close()
    return lines


def _login_kind(account: Any) -> str:
    if account.oauth2 is not None:
        client = account.oauth2
        return f"OAuth2, provider {client.provider}, {client.flow_name}"
    return "bearer token" if account.bearer_token else "password"


def _tls_lines(mailbox: Any, settings: Any) -> list[str]:
    import ssl

    sock = mailbox.client.socket() if mailbox.account.protocol == "imap" else getattr(mailbox.conn, "sock", None)
    if not isinstance(sock, ssl.SSLSocket):
        return ["  TLS:      none (mailAllowPlaintext: the password crossed the network unencrypted)"]
    how = "implicit TLS" if mailbox.account.implicit_tls else "STARTTLS"
    cipher = sock.cipher()
    lines = [f"  TLS:      {sock.version()} ({how}, {cipher[0] if cipher else '?'})"]
    cert: dict[str, Any] = dict(sock.getpeercert() or {})
    if not cert:
        lines.append(f"  cert:     NOT verified (tlsRigour {settings.tls_rigour})")
        return lines
    names = ", ".join(f"{kind}:{value}" for kind, value in cert.get("subjectAltName", ()))
    lines.append(f"  cert:     subject {_name(cert.get('subject', ()))}; names {names or '(none)'}")
    lines.append(f"            issuer {_name(cert.get('issuer', ()))}; valid until {cert.get('notAfter', '?')}")
    return lines


def _name(rdns: tuple[tuple[tuple[str, str], ...], ...]) -> str:
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}
    return ", ".join(f"{short.get(key, key)}={value}" for rdn in rdns for key, value in rdn) or "(empty)"


def _folders(mailbox: Any) -> list[tuple[str, int, int]]:
    from imapclient.exceptions import IMAPClientError

    from mailingest.errors import MailboxError
    from mailingest.mailbox.connection import connection_error

    client = mailbox.client
    out = []
    try:
        for flags, _delimiter, name in client.list_folders():
            if b"\\Noselect" in flags or b"\\NonExistent" in flags:
                continue
            status: dict[bytes, int] = client.folder_status(name, [b"MESSAGES", b"UNSEEN"])
            out.append((name, int(status.get(b"MESSAGES", 0)), int(status.get(b"UNSEEN", 0))))
    except OSError as exc:
        raise connection_error(mailbox.account, exc, "list folders on") from None
    except IMAPClientError as exc:
        raise MailboxError(f"cannot list folders on {mailbox.account.display}: {exc}") from None
    return sorted(out, key=lambda item: (item[0] != "INBOX", item[0]))
