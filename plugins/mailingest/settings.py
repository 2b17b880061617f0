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
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from mailingest import options as opt
from mailingest.errors import ConfigError
from mailingest.fetcher.actions import AfterDownload
from mailingest.mailbox.account import parse_mail_url
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.mime.layout import DecodeSettings
from mailingest.mime.parse import DecodeLimits
from mailingest.oauth2.config import OAuth2Settings, draft_client
from mailingest.options import Option
from mailingest.poller.listing import Since
from mailingest.poller.reannounce import ReannouncePolicy


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
    Option("mailOAuth2Provider", "str", None),
    Option("mailOAuth2ClientId", "str", None),
    Option("mailOAuth2ClientSecretFile", "str", None),
    Option("mailOAuth2TokenUrl", "str", None),
    Option("mailOAuth2Scope", "str", None),
    Option("mailOAuth2Tenant", "str", default_of(OAuth2Settings, "tenant")),
    Option("mailOAuth2Mechanism", "str", default_of(OAuth2Settings, "mechanism")),
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
)

#: every option mailingest declares, by name
ALL_OPTIONS: Dict[str, Option] = {spec.name: spec for spec in (*CONNECTION_OPTIONS, *POLL_OPTIONS,
                                                              *DOWNLOAD_OPTIONS, *DECODE_OPTIONS)}


def _value(options: Any, name: str) -> Any:
    return opt.read(options, ALL_OPTIONS[name])


def declare(options: Any, *specs: Option) -> None:
    """Declare *specs* to sr3, and have ``sr3 show`` print the values mailingest uses
    (:func:`mailingest.options.show_values_used`)."""
    opt.declare(options, *specs)
    opt.show_values_used(ALL_OPTIONS)


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
                    ca_file: Optional[str] = None) -> Optional[OAuth2Settings]:
    """The flow's OAuth2 settings, or None when ``mailOAuth2Provider`` is not set.

    :raises ConfigError: unknown provider or mechanism, generic provider without token URL, an
        unreadable or world-readable mailOAuth2ClientSecretFile (checked now, so a flow fails
        at start rather than at every cycle).
    """
    provider = _value(options, "mailOAuth2Provider")
    if not provider or provider.lower() in ("none", "off"):
        return None
    settings = OAuth2Settings(
        provider=provider,
        client_id=_value(options, "mailOAuth2ClientId"),
        client_secret_file=_path(_value(options, "mailOAuth2ClientSecretFile")),
        token_url=_value(options, "mailOAuth2TokenUrl"),
        scope=" ".join(_words(_value(options, "mailOAuth2Scope"))) or None,
        tenant=_value(options, "mailOAuth2Tenant"),
        mechanism=_value(options, "mailOAuth2Mechanism"),
        timeout=timeout,
        tls_rigour=rigour,
        ca_file=ca_file,
    )
    draft_client(settings, "imap")
    return settings


def _path(value: Optional[str]) -> Optional[str]:
    return os.path.expanduser(value) if value else None


def _words(value: Optional[str]) -> List[str]:
    """Space- or comma-separated words (OAuth2 scopes)."""
    return [word for word in re.split(r"[\s,]+", value or "") if word]


# -- the poll -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PollSettings:
    """What :class:`mailingest.poll.Poll` polls and how (docs/configuration.md, "Poll")."""

    poll_url: str
    folders: Tuple[str, ...]
    search: str
    since: Optional[Since]
    max_size: int
    quarantine_folder: Optional[str]
    uidvalidity_change: str
    idle: bool
    idle_max: float
    announce_max: int
    reannounce: Optional[ReannouncePolicy]
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
    "bodies": frozenset({"body-text", "body-html"}),
    "attachments": frozenset({"part", "message", "uuencoded", "raw"}),
    "metadata": frozenset({"metadata"}),
}


@dataclass(frozen=True)
class DecodeFlowSettings:
    """What :class:`mailingest.decode.Decode` writes (``decode``) and announces (``announce``)."""

    decode: DecodeSettings
    announce: FrozenSet[str]

    @classmethod
    def from_options(cls, options: Any) -> DecodeFlowSettings:
        """:raises ConfigError: a limit is not a positive number, an unknown mailDecodeAnnounce word."""
        try:
            limits = DecodeLimits(max_depth=_value(options, "mailDecodeMaxDepth"),
                                  max_parts=_value(options, "mailDecodeMaxParts"),
                                  max_decoded_bytes=_value(options, "mailDecodeMaxBytes"))
        except ValueError as exc:
            raise ConfigError("mailDecodeMaxDepth/MaxParts/MaxBytes must be positive: %s" % exc) from exc
        decode = DecodeSettings(limits=limits, html=_value(options, "mailDecodeHtml"),
                                uuencode=_value(options, "mailDecodeUuencode"),
                                fsync=_value(options, "mailDecodeFsync"))
        return cls(decode=decode, announce=announced_kinds(_value(options, "mailDecodeAnnounce")))


def declare_decode_options(options: Any) -> None:
    declare(options, *DECODE_OPTIONS)


def announced_kinds(value: Any) -> FrozenSet[str]:
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
