"""The poll's trust options (docs/trust.md), read in one place with :mod:`mailingest.options`'s
typed readers: :func:`screen_settings` is the only function that reads them."""

from __future__ import annotations

from typing import Any

from mailingest import options as opt
from mailingest.errors import ConfigError
from mailingest.options import Option
from mailingest.poller.screening import DEFAULT_HOLD_MAX, DEFAULT_MAX_SIZE, ScreenSettings
from mailingest.trust.addresses import AllowList
from mailingest.trust.classify import MACHINE_CLASSES
from mailingest.trust.policy import Action, TrustPolicy
from mailingest.verify.assess import VerifySettings
from mailingest.verify.dns import parse_server

TRUST_OPTIONS = (
    Option("mailTrustCheck", "str", None),  # a flag whose default depends on the others: "not set" must show
    Option("mailTrustedAuthserv", "list", []),
    Option("mailTrustUnnamedAuthserv", "flag", False),
    Option("mailAcceptFrom", "list", []),
    Option("mailUntrusted", "str", None),  # announce when not set; set, it turns the check on
    Option("mailMachineMail", "str", None),
    Option("mailMachineClasses", "list", []),  # every machine class when not set
    Option("mailLoopAddresses", "list", []),
    Option("mailDkimVerify", "flag", True),
    Option("mailDnsServers", "list", []),
    Option("mailDnsTimeout", "duration", 5.0),
    Option("mailTrustMaxSize", "size", DEFAULT_MAX_SIZE),
    Option("mailTrustHoldMax", "duration", DEFAULT_HOLD_MAX),
)

def screen_settings(options: Any, pop3: bool) -> ScreenSettings | None:
    """The poll's screening settings, None when the check is off: ``mailTrustCheck off``, or not
    set and none of mailTrustedAuthserv, mailAcceptFrom, mailUntrusted, mailMachineMail,
    mailLoopAddresses set.

    :raises ConfigError: a bad value, or ``quarantine`` with POP3 (no folders).
    """
    authserv = opt.values(options, "mailTrustedAuthserv")
    allow = AllowList.parse(opt.values(options, "mailAcceptFrom"))
    untrusted_text = opt.text(options, "mailUntrusted")
    machine_text = opt.text(options, "mailMachineMail")
    loop = [a.lower() for a in opt.values(options, "mailLoopAddresses")]
    switch = opt.text(options, "mailTrustCheck")
    given = bool(authserv or allow or untrusted_text or machine_text or loop)
    if not (given if switch is None else opt.flag(options, "mailTrustCheck")):
        return None
    untrusted = Action.parse(untrusted_text, "mailUntrusted")
    machine = Action.parse(machine_text, "mailMachineMail")
    if pop3 and "quarantine" in (untrusted.kind, machine.kind):
        raise ConfigError("quarantine needs IMAP: POP3 has no folders to move mail to (use skip or tag)")
    classes = [c.lower() for c in opt.values(options, "mailMachineClasses")] or list(MACHINE_CLASSES)
    unknown = sorted(set(classes) - set(MACHINE_CLASSES))
    if unknown:
        raise ConfigError(f"mailMachineClasses {','.join(unknown)}: use some of {','.join(MACHINE_CLASSES)}")
    servers = opt.values(options, "mailDnsServers")
    for server in servers:
        parse_server(server)
    return ScreenSettings(
        verify=VerifySettings(trusted_authserv=frozenset(a.strip().lower().rstrip(".") for a in authserv),
                              trust_unnamed=opt.flag(options, "mailTrustUnnamedAuthserv"),
                              dkim=opt.flag(options, "mailDkimVerify", True),
                              own_addresses=frozenset(loop)),
        policy=TrustPolicy(allow=allow, untrusted=untrusted, machine=machine, machine_classes=frozenset(classes)),
        dns_servers=tuple(servers),
        dns_timeout=opt.duration(options, "mailDnsTimeout", 5.0) or 5.0,
        max_size=opt.count(options, "mailTrustMaxSize", DEFAULT_MAX_SIZE),
        hold_max=opt.duration(options, "mailTrustHoldMax", DEFAULT_HOLD_MAX),
    )
