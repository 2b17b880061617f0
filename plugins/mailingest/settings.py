"""Every sr3 option mailingest reads, with its kind and its one default, and the frozen settings
objects the callbacks are built from.

This is the one place that turns sr3 options into settings: :mod:`mailingest.poll`,
:mod:`mailingest.download`, :mod:`mailingest.decode` and ``mailingest check`` call the functions
here, and no code below them reads an option.  Each option is an :class:`~mailingest.options.Option`
(name, kind, default) in one of the tables below; the readers of :mod:`mailingest.options` take
its default from there, so a default is stated once.  Where a settings class of a lower layer
owns a default (the decoder's bounds, the connection timeout, the OAuth2 tenant), the table takes
it from that class.  docs/configuration.md and docs/authentication.md list every option (a unit
test checks it).

What a reader uses is written back onto the options object (``sr3 show`` prints the values
really used, see :func:`declare`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from dataclasses import dataclass
from typing import Any, Literal

from mailingest import options as opt
from mailingest.errors import ConfigError
from mailingest.fetcher.actions import AfterDownload
from mailingest.mailbox.account import parse_mail_url
from mailingest.mailbox.brokerlocks import broker_url_of, shared_locks
from mailingest.mailbox.budget import DEFAULT_WAIT_SECONDS, NoBudget, SessionBudget, account_digest
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.mime.containers import Formats
from mailingest.mime.layout import DecodeSettings
from mailingest.mime.parse import DecodeLimits
from mailingest.mime.smime import Smime, SmimeSettings
from mailingest.oauth2.config import OPTIONS as OAUTH2_OPTIONS
from mailingest.oauth2.config import OAuth2Settings, settings_from_options
from mailingest.options import Option
from mailingest.poller.ha import ActivePollLease
from mailingest.poller.listing import Since
from mailingest.poller.reannounce import ReannouncePolicy
from mailingest.screensettings import TRUST_OPTIONS
from mailingest.security import keystore


def default_of(settings_class: Any, name: str) -> Any:
    """The default a (frozen) settings dataclass gives its field *name*, without building one."""
    for spec in dataclasses.fields(settings_class):
        if spec.name == name:
            if spec.default is not dataclasses.MISSING:
                return spec.default
            if spec.default_factory is not dataclasses.MISSING:
                return spec.default_factory()
    raise AttributeError(f"{settings_class.__name__} has no field {name!r} with a default")


# -- the options ----------------------------------------------------------------------------------

#: sr3's own ``timeout``, read (not declared) by every mail connection
TIMEOUT = Option("timeout", "duration", default_of(ConnectionSettings, "timeout"))

#: every connection and authentication option (poll and download; docs/authentication.md)
CONNECTION_OPTIONS = (
    Option("mailCaFile", "str", None),
    Option("mailAllowPlaintext", "flag", default_of(ConnectionSettings, "allow_plaintext")),
    Option("tlsRigour", "str", default_of(ConnectionSettings, "tls_rigour")),
    # mailOAuth2Provider, mailOAuth2Flow...: listed (with their defaults) in mailingest.oauth2.config
    *(Option(name, "str", default) for name, default in OAUTH2_OPTIONS),
)

#: sr3's own default when neither scheduled_interval nor appointments are set
DEFAULT_INTERVAL = 300.0
#: notices per folder per cycle (mailAnnounceMax): sr3 holds a cycle's notices in memory
DEFAULT_ANNOUNCE_MAX = 10_000
UIDVALIDITY_CHOICES = ("reannounce", "skip")

#: the poll's own options (scheduled_interval is sr3's, declared here too so a repeated one is
#: read like the others; 0, sr3's "not set", means DEFAULT_INTERVAL)
POLL_OPTIONS = (
    Option("mailFolder", "list", []),  # none: the pollUrl's path, else INBOX
    Option("mailSearch", "str", "UNSEEN"),
    Option("mailSince", "str", None),
    Option("mailMaxSize", "size", 0),
    Option("mailQuarantineFolder", "str", None),
    Option("mailUidValidityChange", "str", UIDVALIDITY_CHOICES[0]),
    Option("mailIdle", "flag", False),
    Option("mailIdleMax", "duration", 20.0),
    Option("mailAnnounceMax", "count", DEFAULT_ANNOUNCE_MAX),
    Option("scheduled_interval", "duration", 0.0),
    # a duration, parsed by ReannouncePolicy (its default depends on the protocol): sr3's
    # "duration" kind cannot tell "not set" from 0
    Option("mailReannounceAfter", "str", None),
)

DOWNLOAD_OPTIONS = (
    Option("mailAfterDownload", "str", default_of(AfterDownload, "kind")),
)

_DECODE_DEFAULTS = DecodeSettings()
#: the decoder's options; the defaults are the decoder's own (mime/parse.py, mime/layout.py)
DECODE_OPTIONS = (
    Option("mailDecodeMaxDepth", "count", _DECODE_DEFAULTS.limits.max_depth),
    Option("mailDecodeMaxParts", "count", _DECODE_DEFAULTS.limits.max_parts),
    Option("mailDecodeMaxBytes", "size", _DECODE_DEFAULTS.limits.max_decoded_bytes),
    Option("mailDecodeHtml", "flag", _DECODE_DEFAULTS.html),
    Option("mailDecodeUuencode", "flag", _DECODE_DEFAULTS.uuencode),
    Option("mailDecodeFsync", "flag", _DECODE_DEFAULTS.fsync),
    Option("mailDecodeAnnounce", "str", "all"),
    Option("mailDecodeProcess", "str", "auto"),
    Option("mailDecodeTnef", "flag", True),
    Option("mailDecodeTnefKeep", "flag", False),
    Option("mailDecodeSmime", "flag", True),
    Option("mailSmimeTrustFile", "str", None),
    Option("mailSmimeKeyFile", "str", None),
    Option("mailSmimeKeyring", "str", None),
)

#: the per-account session budget (poll and download)
SESSION_BUDGET_OPTIONS = (
    Option("mailSessionMax", "count", 0),
    Option("mailSessionWait", "duration", DEFAULT_WAIT_SECONDS),
    Option("mailSessionBroker", "str", None),
)

#: how sr3 posts the flow's notices (every mailingest callback declares it: mailingest.postbatch)
POST_BATCH = Option("mailPostBatch", "count", 1000)

#: every option mailingest declares, by name
ALL_OPTIONS: dict[str, Option] = {spec.name: spec for spec in (*CONNECTION_OPTIONS, *POLL_OPTIONS,
                                                              *DOWNLOAD_OPTIONS, *DECODE_OPTIONS,
                                                              *SESSION_BUDGET_OPTIONS, *TRUST_OPTIONS,
                                                              POST_BATCH)}


def _value(options: Any, name: str) -> Any:
    return opt.read(options, ALL_OPTIONS[name])


def declare(options: Any, *specs: Option) -> None:
    """Declare *specs* to sr3, and have ``sr3 show`` print the values mailingest uses
    (:func:`mailingest.options.show_values_used`)."""
    opt.declare(options, *specs)
    opt.show_values_used(ALL_OPTIONS)


# -- posting --------------------------------------------------------------------------------------

def declare_post_batch(options: Any) -> int:
    """Declare ``mailPostBatch`` and return it: the most notices sr3 posts in one AMQP transaction
    (1 or 0: one transaction per notice, as sr3 itself does)."""
    declare(options, POST_BATCH)
    return max(1, int(_value(options, POST_BATCH.name)))


# -- connections ----------------------------------------------------------------------------------

def declare_connection_options(options: Any) -> None:
    """Options every mail connection honours (poll and download)."""
    declare(options, *CONNECTION_OPTIONS)


def connection_settings(options: Any) -> ConnectionSettings:
    """Connection settings of a flow (TLS, timeouts, OAuth2); pass ``.oauth2`` to
    :func:`mailingest.mailbox.account.resolve_account`.

    :raises ConfigError: bad tlsRigour, unreadable mailCaFile, or bad OAuth2 options.
    """
    timeout = opt.read(options, TIMEOUT) or TIMEOUT.default  # sr3's 0: not set
    rigour = _value(options, "tlsRigour")
    ca_file = _path(_value(options, "mailCaFile"))
    return ConnectionSettings(
        timeout=timeout,
        tls_rigour=rigour,
        ca_file=ca_file,
        allow_plaintext=_value(options, "mailAllowPlaintext"),
        oauth2=oauth2_settings(options, timeout, rigour, ca_file),
    )


def oauth2_settings(options: Any, timeout: float = TIMEOUT.default,
                    rigour: str = default_of(ConnectionSettings, "tls_rigour"),
                    ca_file: str | None = None) -> OAuth2Settings | None:
    """The flow's OAuth2 settings (:func:`mailingest.oauth2.config.settings_from_options` reads the
    ``mailOAuth2*`` options through this module's table), or None when ``mailOAuth2Provider`` is
    not set.

    :raises ConfigError: bad values; an unreadable or world-readable secret, key or certificate
        file (checked now, so a flow fails at start rather than at every cycle).
    """
    return settings_from_options(lambda name, default: _value(options, name), timeout=timeout,
                                 tls_rigour=rigour, ca_file=ca_file)


def _path(value: str | None) -> str | None:
    return os.path.expanduser(value) if value else None


def _words(value: str | None) -> list[str]:
    """Space- or comma-separated words (OAuth2 scopes)."""
    return [word for word in re.split(r"[\s,]+", value or "") if word]


# -- the poll -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PollSettings:
    """What :class:`mailingest.poll.Poll` polls and how (docs/configuration.md, "Poll")."""

    poll_url: str
    folders: tuple[str, ...]
    search: str
    since: Since | None
    max_size: int
    quarantine_folder: str | None
    uidvalidity_change: str
    idle: bool
    idle_max: float
    announce_max: int
    reannounce: ReannouncePolicy | None
    #: seconds between full cycles (scheduled_interval, or sr3's own default)
    interval: float

    @classmethod
    def from_options(cls, options: Any) -> PollSettings:
        """:raises ConfigError: a bad pollUrl or option value."""
        poll_url = opt.text(options, "pollUrl") or ""
        mail_url = parse_mail_url(poll_url)
        folders = _value(options, "mailFolder") or [mail_url.path.strip("/") or "INBOX"]
        uidvalidity_change = _value(options, "mailUidValidityChange").lower()
        if uidvalidity_change not in UIDVALIDITY_CHOICES:
            raise ConfigError(f"mailUidValidityChange {uidvalidity_change!r}: use reannounce or skip")
        quarantine = _value(options, "mailQuarantineFolder")
        pop3 = mail_url.scheme.startswith("pop")
        if pop3 and folders != ["INBOX"]:
            raise ConfigError(f"POP3 has only one folder (INBOX); mailFolder {','.join(folders)} cannot be polled")
        if pop3 and quarantine:
            raise ConfigError("mailQuarantineFolder needs IMAP: POP3 has no folders to move mail to")
        return cls(
            poll_url=poll_url,
            folders=tuple(folders),
            search=_value(options, "mailSearch"),
            since=Since.parse(_value(options, "mailSince")),
            max_size=_value(options, "mailMaxSize"),
            quarantine_folder=quarantine,
            uidvalidity_change=uidvalidity_change,
            idle=_value(options, "mailIdle") and not pop3,
            idle_max=_value(options, "mailIdleMax") or ALL_OPTIONS["mailIdleMax"].default,  # 0: not set
            announce_max=_value(options, "mailAnnounceMax"),
            reannounce=ReannouncePolicy.parse(_value(options, "mailReannounceAfter"), pop3),
            interval=_value(options, "scheduled_interval") or DEFAULT_INTERVAL,
        )


def declare_poll_options(options: Any) -> None:
    declare(options, *POLL_OPTIONS)
    declare_connection_options(options)


# -- the download ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class DownloadSettings:
    """What :class:`mailingest.download.Download` does after a download, and how it connects."""

    after_download: AfterDownload
    connection: ConnectionSettings

    @classmethod
    def from_options(cls, options: Any) -> DownloadSettings:
        """:raises ConfigError: a bad mailAfterDownload or connection option."""
        return cls(after_download=AfterDownload.parse(_value(options, "mailAfterDownload")),
                   connection=connection_settings(options))


def declare_download_options(options: Any) -> None:
    declare_connection_options(options)
    declare(options, *DOWNLOAD_OPTIONS)


# -- the decode -----------------------------------------------------------------------------------

#: what each ``mailDecodeAnnounce`` word stands for, as :class:`~mailingest.mime.layout.WrittenFile` kinds
ANNOUNCE_GROUPS = {
    "bodies": frozenset({"body-text", "body-html", "tnef-body"}),
    "attachments": frozenset({"part", "message", "uuencoded", "raw"}),
    "metadata": frozenset({"metadata"}),
}


@dataclass(frozen=True)
class DecodeFlowSettings:
    """What :class:`mailingest.decode.Decode` writes (``decode``) and announces (``announce``)."""

    decode: DecodeSettings
    announce: frozenset[str]

    @classmethod
    def from_options(cls, options: Any) -> DecodeFlowSettings:
        """:raises ConfigError: a limit is not a positive number, an unknown mailDecodeAnnounce word."""
        try:
            limits = DecodeLimits(max_depth=_value(options, "mailDecodeMaxDepth"),
                                  max_parts=_value(options, "mailDecodeMaxParts"),
                                  max_decoded_bytes=_value(options, "mailDecodeMaxBytes"))
        except ValueError as exc:
            raise ConfigError("mailDecodeMaxDepth/MaxParts/MaxBytes must be positive: %s" % exc) from exc
        smime: Smime | None | Literal["default"] = None
        if _value(options, "mailDecodeSmime"):
            trust_file, key_file = _value(options, "mailSmimeTrustFile"), _value(options, "mailSmimeKeyFile")
            key_pem = _smime_key_from_keyring(_value(options, "mailSmimeKeyring")) if not key_file else None
            smime = Smime(SmimeSettings(trust_file=trust_file, key_file=key_file, key_pem=key_pem,
                                        key_source="mailSmimeKeyring %s" % _value(options, "mailSmimeKeyring"))) \
                if trust_file or key_file or key_pem else "default"
        formats = Formats(tnef=_value(options, "mailDecodeTnef"), tnef_keep=_value(options, "mailDecodeTnefKeep"),
                          smime=smime)
        decode = DecodeSettings(limits=limits, html=_value(options, "mailDecodeHtml"),
                                uuencode=_value(options, "mailDecodeUuencode"),
                                fsync=_value(options, "mailDecodeFsync"), formats=formats)
        return cls(decode=decode, announce=announced_kinds(_value(options, "mailDecodeAnnounce")))


#: the keyring service of S/MIME decryption keys (user: the name given by mailSmimeKeyring)
SMIME_KEYRING_SERVICE = "mailingest-smime-key"


def _smime_key_from_keyring(name: str | None) -> bytes | None:
    """The PEM key and certificate stored under *name* (mailSmimeKeyring); None without a name.

    :raises ConfigError: no such entry (the message says how to store one, never shows a secret).
    """
    if not name:
        return None
    pem = keystore.get_secret(SMIME_KEYRING_SERVICE, name)
    if not pem:
        raise ConfigError("mailSmimeKeyring %s: no key in the keyring (%s) under service %s; store the PEM "
                          "key and certificate with: keyring set %s %s < key-and-certificate.pem"
                          % (name, keystore.keyring_name(), SMIME_KEYRING_SERVICE, SMIME_KEYRING_SERVICE, name))
    return pem.encode("utf-8")


#: the values of ``mailDecodeProcess``
DECODE_PROCESS_CHOICES = ("auto", "on", "off")


def decode_process_wanted(value: Any, instances: int, cpus: int) -> bool:
    """Whether each worker decodes in a process of its own (``mailDecodeProcess``): ``on``,
    ``off``, or ``auto`` (default): on when the subscriber's *instances* leave a core of the
    machine's *cpus* free for it, off otherwise (every core already runs a worker: a second
    process per worker would only add its start-up, its memory and the hand-over).

    :raises ConfigError: another value.
    """
    word = str(value if value is not None else "auto").strip().lower()
    if word not in DECODE_PROCESS_CHOICES:
        raise ConfigError("mailDecodeProcess %s: use %s" % (value, ", ".join(DECODE_PROCESS_CHOICES)))
    if word == "auto":
        return instances < cpus
    return word == "on"


def declare_decode_options(options: Any) -> None:
    declare(options, *DECODE_OPTIONS)


def announced_kinds(value: Any) -> frozenset[str]:
    """The file kinds ``mailDecodeAnnounce`` asks to announce: ``all`` (default), ``none``, or a
    comma-separated choice of ``bodies``, ``attachments``, ``metadata``.

    :raises ConfigError: an unknown word.
    """
    words = [w.strip().lower() for w in str(value if value is not None else "all").replace(" ", ",").split(",")]
    words = [w for w in words if w]
    if words in (["all"], []):
        return frozenset().union(*ANNOUNCE_GROUPS.values())
    if words == ["none"]:
        return frozenset()
    unknown = [w for w in words if w not in ANNOUNCE_GROUPS]
    if unknown:
        raise ConfigError("mailDecodeAnnounce %s: use all, none, or some of %s"
                          % (",".join(unknown), ",".join(ANNOUNCE_GROUPS)))
    return frozenset().union(*(ANNOUNCE_GROUPS[w] for w in words))


# -- the connection budget of an account (mailingest.mailbox.budget) -------------------------------



def session_budget(options: Any, flow_broker: Any, should_stop: Any) -> Any:
    """A :class:`SessionBudget` for ``mailSessionMax`` (a :class:`NoBudget` when it is 0), its slots
    on ``mailSessionBroker`` or else ``flow_broker`` (the poll's post_broker, the download's broker).

    :raises ConfigError: ``mailSessionMax`` set but no broker to count the sessions on.
    """
    declare(options, *SESSION_BUDGET_OPTIONS)
    max_sessions = _value(options, "mailSessionMax")
    if not max_sessions:
        return NoBudget()
    url = _value(options, "mailSessionBroker")
    if url and hasattr(getattr(options, "credentials", None), "validate_urlstr"):
        found, credential = options.credentials.validate_urlstr(url)  # its password from credentials.conf
        url = broker_url_of(credential) if found else url
    url = url or broker_url_of(flow_broker)
    if not url:
        raise ConfigError("mailSessionMax needs a broker to count sessions on: set mailSessionBroker "
                          "(an amqp:// URL every poll and download of the account uses)")
    wait = _value(options, "mailSessionWait")
    return SessionBudget(shared_locks(url), max_sessions, wait, should_stop)


# -- a highly available poll under sr3's vip (mailingest.poller.ha) -------------------------------

def poll_lease(options: Any, account_display: str) -> tuple[ActivePollLease, str]:
    """The poll's :class:`ActivePollLease` and this node's announcer name (empty without ``vip``).

    The lease group is the account and the post_exchange, so the nodes of one poll share it
    whatever their config files are called.

    :raises ConfigError: ``vip`` set without a post_broker.
    """
    vips = [v for v in (getattr(options, "vip", None) or []) if v]
    if not vips:
        return ActivePollLease("", None, None), ""
    url = broker_url_of(getattr(options, "post_broker", None))
    if not url:
        raise ConfigError("vip needs post_broker: the poll nodes share their state and the poll lease through it")
    exchange = getattr(options, "post_exchange", None) or ""
    if isinstance(exchange, (list, tuple)):
        exchange = ",".join(str(x) for x in exchange)
    group = account_digest(f"{account_display}|{exchange}")
    announcer = f"{socket.gethostname()}:{os.getpid()}"
    queue, split = _poll_queue_and_split_exchanges(options)
    return ActivePollLease(group, shared_locks(url), getattr(options, "novipFilename", None), queue, split), announcer


def _poll_queue_and_split_exchanges(options: Any) -> tuple[str, list[str]]:
    """The queue sr3 declared for a vip poll, and the exchanges it posts to with
    ``post_exchangeSplit`` (sr3 binds only one of them; [] without a split)."""
    queue = ""
    for subscription in getattr(options, "subscriptions", None) or []:
        try:
            queue = str(subscription["queue"]["name"])
            break
        except (KeyError, TypeError):
            continue
    exchanges: list[str] = []
    for publisher in getattr(options, "publishers", None) or []:
        try:
            names = publisher["exchange"]
        except (KeyError, TypeError):
            continue
        if isinstance(names, (list, tuple)) and len(names) > 1:
            exchanges = [str(name) for name in names]
    return queue, exchanges
