"""``mailingest oauth2``: obtain the first refresh token, store it, print the config lines.

Authorization-code flow with a loopback redirect by default (a browser on this host, or an
``ssh -L`` port forward); ``--device`` for the device flow on headless hosts.  The refresh
token goes to the keyring (service ``mailingest-oauth2:<token URL>``, user = ``--user``);
``--store print`` prints a credentials.conf line with it instead (for hosts without a keyring).
Nothing else secret is printed.  Exit status 0 on success, 1 on failure, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import urllib.parse
from typing import Any, List, Optional

logger = logging.getLogger(__name__)

#: IMAP host names to suggest in the printed pollUrl
PRESET_IMAP_HOSTS = {"google": "imap.gmail.com", "microsoft": "outlook.office365.com"}


def add_parser(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "oauth2", help="get an OAuth2 refresh token for an account and store it in the keyring",
        description="Run the OAuth2 consent once for a mail account (see docs/authentication.md).")
    p.add_argument("--provider", required=True, choices=["google", "microsoft", "generic"])
    p.add_argument("--user", required=True, help="the mail account's user name (usually the e-mail address)")
    p.add_argument("--client-id", help="OAuth2 client id (or from --client-secret-file)")
    p.add_argument("--client-secret-file", metavar="FILE",
                   help="JSON file with client_id and client_secret (Google's client_secret.json); mode 0600")
    p.add_argument("--token-url", help="token endpoint (generic provider, or to override the preset)")
    p.add_argument("--auth-url", help="authorization endpoint (generic provider)")
    p.add_argument("--device-url", help="device authorization endpoint (generic provider)")
    p.add_argument("--scope", help="scopes, space separated (default: the preset's mail scope)")
    p.add_argument("--tenant", default="common", help="Microsoft tenant id or domain (default %(default)s)")
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

    secret_file = os.path.abspath(args.client_secret_file) if args.client_secret_file else None
    settings = OAuth2Settings(provider=args.provider, client_id=args.client_id, client_secret_file=secret_file,
                              token_url=args.token_url, scope=args.scope, tenant=args.tenant)
    client = draft_client(settings, args.protocol)
    if not client.client_id:
        raise ConfigError("no client id: give --client-id or --client-secret-file")
    preset = settings.preset
    tenant = args.tenant or "common"
    endpoints = oauth2_flows.Endpoints(
        token_url=client.token_url,
        auth_url=args.auth_url or preset.auth_url.replace("{tenant}", tenant),
        device_url=args.device_url or preset.device_url.replace("{tenant}", tenant),
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
    lines = _config_lines(args, client, secret is not None and client.client_secret is None)
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
    scheme = "imaps" if args.protocol == "imap" else "pops"
    host = PRESET_IMAP_HOSTS.get(args.provider, "MAIL-SERVER")
    if args.provider == "microsoft" and args.protocol == "pop3":
        host = "outlook.office365.com"
    return f"{scheme}://{urllib.parse.quote(args.user, safe='')}@{host}/"


def _config_lines(args: argparse.Namespace, client: Any, secret_in_keyring: bool) -> List[str]:
    from mailingest.oauth2.config import PROVIDERS

    preset = PROVIDERS[args.provider]
    lines = ["# sr3 poll and subscribe configuration:", f"pollUrl {_mail_url(args)}",
             f"mailOAuth2Provider {args.provider}"]
    optional: List[Optional[str]] = [
        None if args.client_secret_file else f"mailOAuth2ClientId {client.client_id}",
        f"mailOAuth2ClientSecretFile {client.secret_file}" if client.secret_file else None,
        f"mailOAuth2TokenUrl {client.token_url}" if args.provider == "generic" or args.token_url else None,
        f"mailOAuth2Scope {client.scope}" if client.scope != preset.scope(args.protocol) else None,
        f"mailOAuth2Tenant {args.tenant}" if args.provider == "microsoft" and args.tenant != "common" else None,
    ]
    lines.extend(line for line in optional if line)
    if secret_in_keyring:
        lines.append(f"# client secret: in the keyring, service '{client.client_secret_service}', "
                     f"user '{client.client_id}'")
    return lines
