"""``mailingest oauth2``: obtain the first refresh token, store it, print the config lines; or test
an app-only set-up.

Authorization-code flow with a loopback redirect by default (a browser on this host, or an
``ssh -L`` port forward); ``--device`` for the device flow on headless hosts.  The refresh
token goes to the keyring (service ``mailingest-oauth2:<token URL>``, user = ``--user``);
``--store print`` prints a credentials.conf line with it instead (for hosts without a keyring).

App-only flows (``--flow client_credentials``, ``--certificate-file``, ``--service-account-file``)
need no browser and store nothing: the command asks for an access token exactly as the poll
would (the client secret from credentials.conf, the secret file or the keyring; the key from
its file or the keyring), says what the provider granted, and prints the config lines.

Nothing secret is printed (but the ``--store print`` line).  Exit status 0 on success, 1 on
failure, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import urllib.parse
from typing import Any

logger = logging.getLogger(__name__)

#: IMAP host names to suggest in the printed pollUrl
PRESET_IMAP_HOSTS = {"google": "imap.gmail.com", "microsoft": "outlook.office365.com"}


APP_ONLY_EXAMPLES = """\
app-only (unattended) set-ups, tested without a browser:
  Microsoft Entra, certificate (the app has IMAP.AccessAsApp/POP.AccessAsApp with admin consent;
  Exchange: New-ServicePrincipal, Add-MailboxPermission):
    mailingest oauth2 --provider microsoft --tenant TENANT --client-id APP_ID --user feed@example.com \\
        --certificate-file ~/.config/mailingest/entra-app.pem
  Microsoft Entra, client secret (in credentials.conf as https://APP_ID:SECRET@login.microsoftonline.com/
  TENANT/oauth2/v2.0/token, in --client-secret-file, or in the keyring):
    mailingest oauth2 --provider microsoft --flow client_credentials --tenant TENANT --client-id APP_ID \\
        --user feed@example.com
  Google service account with domain-wide delegation for https://mail.google.com/:
    mailingest oauth2 --provider google --service-account-file ~/.config/mailingest/sa-key.json \\
        --user feed@example.org
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "oauth2", help="get an OAuth2 refresh token for an account and store it in the keyring, or test an "
                       "app-only set-up",
        description="Run the OAuth2 consent once for a mail account, or test an app-only set-up (no browser, "
                    "nothing stored); see docs/authentication.md.",
        epilog=APP_ONLY_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--provider", required=True, choices=["google", "microsoft", "generic"])
    p.add_argument("--user", required=True, help="the mail account's user name (usually the e-mail address; "
                                                  "app-only: the mailbox)")
    p.add_argument("--client-id", help="OAuth2 client id (or from --client-secret-file)")
    p.add_argument("--client-secret-file", metavar="FILE",
                   help="JSON file with client_id and client_secret (Google's client_secret.json); mode 0600")
    p.add_argument("--token-url", help="token endpoint (generic provider, or to override the preset)")
    p.add_argument("--auth-url", help="authorization endpoint (generic provider)")
    p.add_argument("--device-url", help="device authorization endpoint (generic provider)")
    p.add_argument("--scope", help="scopes, space separated (default: the preset's mail scope)")
    p.add_argument("--tenant", default="common", help="Microsoft tenant id or domain (default %(default)s)")
    p.add_argument("--flow", default="auto", choices=["auto", "delegated", "client_credentials", "service_account"],
                   help="delegated (a person approves once; the default) or an app-only flow: client_credentials "
                        "(Microsoft Entra), service_account (Google); auto: app-only when a certificate or service "
                        "account file is given")
    p.add_argument("--certificate-file", metavar="FILE",
                   help="app-only (Entra): PEM certificate registered with the app, with its key or without")
    p.add_argument("--private-key-file", metavar="FILE", help="app-only (Entra): the certificate's PEM key (mode 600)")
    p.add_argument("--service-account-file", metavar="FILE",
                   help="app-only (Google): the service account's JSON key file (mode 600)")
    p.add_argument("--cloud", default="global", choices=["global", "usgov", "china"],
                   help="Microsoft cloud (default %(default)s)")
    p.add_argument("--protocol", choices=["imap", "pop3"], default="imap",
                   help="which protocol's scope to ask for (Microsoft has one per protocol; default imap)")
    p.add_argument("--device", action="store_true", help="device flow: approve on another device (headless hosts)")
    p.add_argument("--redirect-host", default="127.0.0.1", help="loopback host in the redirect URI")
    p.add_argument("--port", type=int, default=0, help="loopback port for the redirect (default: any free one)")
    p.add_argument("--no-browser", action="store_true", help="print the URL only, do not open a browser")
    p.add_argument("--store", choices=["keyring", "print"], default="keyring",
                   help="keep the refresh token in the keyring (default) or print a credentials.conf line")
    p.add_argument("--url", help="the mail URL the flows will use (pollUrl), for the printed lines")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the approval")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mailingest.errors import MailError

    try:
        return _run(args)
    except MailError as exc:
        print(f"mailingest oauth2: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from mailingest.errors import ConfigError
    from mailingest.oauth2 import flows as oauth2_flows
    from mailingest.oauth2.config import OAuth2Settings, draft_client
    from mailingest.security import keystore

    settings = OAuth2Settings(provider=args.provider, client_id=args.client_id,
                              client_secret_file=_absolute(args.client_secret_file), token_url=args.token_url,
                              scope=args.scope, tenant=args.tenant, flow=args.flow,
                              certificate_file=_absolute(args.certificate_file),
                              private_key_file=_absolute(args.private_key_file),
                              service_account_file=_absolute(args.service_account_file), cloud=args.cloud)
    if settings.grant != "delegated":
        return _run_app_only(args, settings)
    client = draft_client(settings, args.protocol)
    if not client.client_id:
        raise ConfigError("no client id: give --client-id or --client-secret-file")
    preset = settings.preset
    endpoints = oauth2_flows.Endpoints(
        token_url=client.token_url,
        auth_url=args.auth_url or settings.expand(preset.auth_url),
        device_url=args.device_url or settings.expand(preset.device_url),
        scope=client.scope, auth_params=preset.auth_params)
    if args.device and preset.no_device_flow and not args.device_url:
        raise ConfigError(preset.no_device_flow)
    secret = client.client_secret or keystore.get_secret(client.client_secret_service, client.client_id)
    show = _shower(args)
    if args.device:
        response = oauth2_flows.device_flow(endpoints, client.client_id, secret, show=show, timeout=args.timeout)
    else:
        response = oauth2_flows.code_flow(endpoints, client.client_id, secret, show=show, host=args.redirect_host,
                                          port=args.port, login_hint=args.user, timeout=args.timeout)
    if not response.refresh_token:
        raise ConfigError("the provider granted access but sent no refresh token; for Microsoft the scope must "
                          "include offline_access, for Google the consent must be given again")
    lines = _config_lines(args, client, secret is not None and client.client_secret is None, settings)
    if args.store == "keyring":
        keystore.set_secret(client.refresh_service, args.user, response.refresh_token)
        lines.insert(0, f"# refresh token stored in the keyring ({keystore.keyring_name()}): service "
                        f"'{client.refresh_service}', user '{args.user}'")
    else:
        mail_url = urllib.parse.urlsplit(_mail_url(args))
        lines.insert(0, "# add to credentials.conf (mode 600); the password is the refresh token:")
        lines.insert(1, f"{mail_url.scheme}://{urllib.parse.quote(args.user, safe='')}:"
                        f"{urllib.parse.quote(response.refresh_token, safe='')}@{mail_url.netloc.rpartition('@')[2]}/")
    print("\n".join(lines))
    return 0


def _absolute(path: str | None) -> str | None:
    return os.path.abspath(os.path.expanduser(path)) if path else None


def _run_app_only(args: argparse.Namespace, settings: Any) -> int:
    """Ask for an app-only access token as the poll would; say what was granted; print the config."""
    from mailingest.mailbox.account import resolve_account
    from mailingest.mailbox.credentials_file import CredentialsFile, sr3_default_config
    from mailingest.oauth2.assertions import token_claims
    from mailingest.oauth2.tokens import token_source

    if args.device or args.store != "keyring":
        from mailingest.errors import ConfigError

        raise ConfigError("--device and --store are for delegated flows: an app-only flow needs no consent and "
                          "stores no token")
    url = _mail_url(args)
    credentials = CredentialsFile.of(sr3_default_config()).database()
    account = resolve_account(url, credentials, settings)
    client = account.oauth2
    assert client is not None
    source = token_source(client, account.username, account.display)
    token = source.access_token()
    granted = getattr(source, "granted", {})
    lines = [f"# {client.flow_name}: access token obtained for {account.username} from {client.token_url}, "
             f"valid {float(granted.get('expires_in') or 0):.0f} s"]
    claims = token_claims(token)
    shown = [f"{name} {', '.join(map(str, claims[name])) if isinstance(claims[name], list) else claims[name]}"
             for name in ("roles", "scp", "aud", "tid", "app_displayname") if claims.get(name)]
    if shown or granted.get("scope"):
        lines.append(f"# granted: {'; '.join(shown) or 'scope ' + str(granted['scope'])}")
    if claims and "roles" in claims and not any("AccessAsApp" in str(role) for role in claims.get("roles") or []):
        lines.append("# warning: the token has no IMAP.AccessAsApp or POP.AccessAsApp role: add the application "
                     "permission and grant admin consent (docs/authentication.md)")
    lines += _config_lines(args, client, False, settings)
    lines.append(f"# then: mailingest check {url} --config poll/<name>  (logs in with this token)")
    print("\n".join(lines))
    return 0


def _shower(args: argparse.Namespace) -> Any:
    def show(text: str) -> None:
        if text.startswith("http"):
            print(f"Open this URL in a browser and allow access for {args.user}:\n{text}", file=sys.stderr, flush=True)
            if not args.no_browser:
                import webbrowser

                webbrowser.open(text)
        else:
            print(text, file=sys.stderr, flush=True)

    return show


def _mail_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    from mailingest.oauth2.config import MICROSOFT_CLOUDS

    scheme = "imaps" if args.protocol == "imap" else "pops"
    host = PRESET_IMAP_HOSTS.get(args.provider, "MAIL-SERVER")
    if args.provider == "microsoft":
        host = MICROSOFT_CLOUDS[getattr(args, "cloud", "global") or "global"].mail_host
    if args.provider == "google" and args.protocol == "pop3":
        host = "pop.gmail.com"
    return f"{scheme}://{urllib.parse.quote(args.user, safe='')}@{host}/"


def _config_lines(args: argparse.Namespace, client: Any, secret_in_keyring: bool, settings: Any) -> list[str]:
    lines = ["# sr3 poll and subscribe configuration:", f"pollUrl {_mail_url(args)}",
             f"mailOAuth2Provider {args.provider}"]
    from_file = args.client_secret_file or args.service_account_file
    optional: list[str | None] = [
        f"mailOAuth2Tenant {args.tenant}" if args.provider == "microsoft" and args.tenant != "common" else None,
        f"mailOAuth2Cloud {settings.cloud}" if settings.cloud != "global" else None,
        None if from_file else f"mailOAuth2ClientId {client.client_id}",
        f"mailOAuth2ClientSecretFile {client.secret_file}" if client.secret_file else None,
        f"mailOAuth2TokenUrl {args.token_url or client.token_url}"
        if args.provider == "generic" or args.token_url else None,
        f"mailOAuth2Scope {client.scope}" if client.scope != settings.preset_scope(args.protocol) else None,
        f"mailOAuth2Flow {args.flow}" if args.flow != "auto" else None,
        f"mailOAuth2CertificateFile {settings.certificate_file}" if settings.certificate_file else None,
        f"mailOAuth2PrivateKeyFile {settings.private_key_file}" if settings.private_key_file else None,
        f"mailOAuth2ServiceAccountFile {settings.service_account_file}" if settings.service_account_file else None,
    ]
    lines.extend(line for line in optional if line)
    if secret_in_keyring:
        lines.append(f"# client secret: in the keyring, service '{client.client_secret_service}', "
                     f"user '{client.client_id}'")
    return lines
