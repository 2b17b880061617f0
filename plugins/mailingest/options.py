"""sr3 options: declaring them, reading them with one rule, and the connection settings.

This is the one place that reads sr3's camelCase options; below it, code never reads ``self.o``.
Every option is documented in docs/configuration.md (connection and authentication options:
docs/authentication.md).

**One value per option, the last line read wins.** sr3 reads default.conf, then the config
(an ``include`` where it stands), then ``set <callback>.<option>`` for one callback.  An
option sr3 does not know yet while it reads the files (every ``mail*`` option, and
``scheduled_interval``, which only a callback declares) comes out as a list when it appears
twice; the readers here take the last of those values, for every kind, and say so once.  A
*list* option takes several values written on that one line, separated by commas
(``mailFolder INBOX,Archive``), so a site default in default.conf is replaced by the config's
own line, never added to.

Each reader writes the value it uses back onto the options object it read, and
:func:`declare` makes sr3's own post-load check (the values ``sr3 show`` prints) use the same
rule, so ``sr3 show`` shows the value really used.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple

from mailingest.errors import ConfigError
from mailingest.mailbox.brokerlocks import broker_url_of, shared_locks
from mailingest.mailbox.budget import DEFAULT_WAIT_SECONDS, NoBudget, SessionBudget, account_digest
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.oauth2.config import OPTIONS as OAUTH2_OPTIONS
from mailingest.oauth2.config import OAuth2Settings, settings_from_options
from mailingest.poller.ha import ActivePollLease

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
KINDS = ("str", "list", "flag", "duration", "count", "size")


class Option(NamedTuple):
    """An option a callback declares: sr3 name, kind (one of :data:`KINDS`) and default."""

    name: str
    kind: str
    default: Any


#: every connection and authentication option (poll and download)
CONNECTION_OPTIONS = (
    Option("mailCaFile", "str", None),
    Option("mailAllowPlaintext", "flag", False),
    Option("tlsRigour", "str", "normal"),
    # mailOAuth2Provider, mailOAuth2Flow...: listed and read in mailingest.oauth2.config
    *(Option(name, "str", default) for name, default in OAUTH2_OPTIONS),
)

#: options mailingest declared in this process, by name (sr3's post-load check applies the rule to them)
_DECLARED: Dict[str, Option] = {}
_warned_repeats: Set[str] = set()

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([smhdw]?)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_FLAG_WORDS = {"true": True, "yes": True, "on": True, "1": True,
               "false": False, "no": False, "off": False, "0": False}


# -- declaring ------------------------------------------------------------------------------------

def declare(options: Any, *specs: Option) -> None:
    """Declare *specs* to sr3 (``add_option``), after reducing a repeated option to its last value,
    so sr3 converts one value, not a list.  The value ``sr3 show`` prints follows the same rule.
    """
    for spec in specs:
        if spec.kind not in KINDS:
            raise ValueError(f"option {spec.name}: unknown kind {spec.kind!r}")
        raw = getattr(options, spec.name, None)
        if isinstance(raw, list) and raw:
            setattr(options, spec.name, _last(spec.name, raw, spec.kind))
        options.add_option(spec.name, spec.kind, spec.default)
        _DECLARED[spec.name] = spec
    _apply_rule_to_what_sr3_shows()


def declare_connection_options(options: Any) -> None:
    """Options every mail connection honours (poll and download)."""
    declare(options, *CONNECTION_OPTIONS)


# -- reading --------------------------------------------------------------------------------------

def text(options: Any, name: str, default: Optional[str] = None) -> Optional[str]:
    """A *str* option: the last value given, stripped; *default* when unset or empty."""
    raw = _scalar(options, name, "str")
    value = str(raw).strip() if raw is not None and raw is not True else ""
    result = value or default
    _keep(options, name, result)
    return result


def values(options: Any, name: str) -> List[str]:
    """A *list* option: the items of the last line given, split at commas (``INBOX,Archive``)."""
    raw = getattr(options, name, None)
    if isinstance(raw, (list, tuple)):
        raw = _last(name, list(raw), "list") if raw else None
    items = [part.strip() for part in str(raw).split(",")] if raw not in (None, True) else []
    result = [item for item in items if item]
    _keep(options, name, result)
    return result


def flag(options: Any, name: str, default: bool = False) -> bool:
    """A *flag* option: ``on``/``off`` (also yes/no, true/false, 1/0); a bare ``name`` line is on.

    :raises ConfigError: any other word.
    """
    raw = _scalar(options, name, "flag")
    if raw is None or raw == "":
        result = default
    elif isinstance(raw, bool):
        result = raw
    else:
        word = str(raw).strip().lower()
        if word not in _FLAG_WORDS:
            raise ConfigError(f"{name} {raw!r}: use on or off")
        result = _FLAG_WORDS[word]
    _keep(options, name, result)
    return result


def duration(options: Any, name: str, default: float) -> float:
    """A *duration* option in seconds: ``30``, ``1.5``, ``30s``, ``5m``, ``1h``, ``1d``, ``1w``.

    :raises ConfigError: anything else, or a negative number.
    """
    raw = _scalar(options, name, "duration")
    if raw is None or raw == "":
        result = float(default)
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        result = float(raw)
    else:
        match = _DURATION.match(str(raw))
        if not match:
            raise ConfigError(f"{name} {raw!r}: use seconds (30) or a number with a unit (30s, 5m, 1h, 1d, 1w)")
        result = float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
    if result < 0 or math.isnan(result):
        raise ConfigError(f"{name} {raw!r}: use a duration of 0 or more")
    _keep(options, name, result)
    return result


def count(options: Any, name: str, default: int, minimum: int = 0) -> int:
    """A *count* or *size* option as an int: ``2000``, ``25m`` (10**6), ``100mb``/``100Mi`` (2**20).

    :raises ConfigError: not a whole number of at least *minimum*.
    """
    raw = _scalar(options, name, "count")
    what = f"{name} {raw!r}: use a whole number of {minimum} or more (k/m/g suffixes allowed)"
    if raw is None or raw == "":
        result = int(default)
    elif isinstance(raw, bool):
        raise ConfigError(what)
    elif isinstance(raw, int):
        result = raw
    elif isinstance(raw, float):
        if not raw.is_integer():
            raise ConfigError(what)
        result = int(raw)
    else:
        result = _parse_size(str(raw).strip(), what)
    if result < minimum:
        raise ConfigError(what)
    _keep(options, name, result)
    return result


def _parse_size(word: str, what: str) -> int:
    import humanfriendly  # an sr3 dependency; sr3 parses its own sizes with it

    negative = word.startswith("-")
    body = word[1:] if negative else word
    try:
        number = humanfriendly.parse_size(body, binary=bool(body) and body[-1].lower() in ("i", "b"))
    except humanfriendly.InvalidSize:
        raise ConfigError(what) from None
    return -number if negative else number


def _scalar(options: Any, name: str, kind: str) -> Any:
    raw = getattr(options, name, None)
    if isinstance(raw, (list, tuple)):
        return _last(name, list(raw), kind) if raw else None
    return raw


def _last(name: str, given: List[Any], kind: str) -> Any:
    """The last of the values a repeated option was given (logged once per option)."""
    if len(given) > 1 and name not in _warned_repeats:
        _warned_repeats.add(name)
        hint = ("; to give several values, write them on one line separated by commas"
                if kind == "list" else "")
        logger.warning("%s is set %d times (%s): the last one is used, %s%s", name, len(given),
                       " | ".join(str(v) for v in given), given[-1], hint)
    return given[-1]


def _keep(options: Any, name: str, value: Any) -> None:
    """Write the value really used back where it was read (``sr3 show`` prints these objects)."""
    try:
        setattr(options, name, value)
    except AttributeError:  # a read-only stand-in (tests): nothing to show
        pass


def _quietly_normalised(spec: Option, raw: Any) -> Any:
    """*raw* under the one-value rule and converted to the spec's kind; *raw* if it does not convert."""
    holder = _Holder()
    setattr(holder, spec.name, raw)
    readers = {"str": lambda: text(holder, spec.name, spec.default),
               "list": lambda: values(holder, spec.name),
               "flag": lambda: flag(holder, spec.name, bool(spec.default)),
               "duration": lambda: duration(holder, spec.name, spec.default or 0),
               "count": lambda: count(holder, spec.name, spec.default or 0, minimum=-(1 << 62)),
               "size": lambda: count(holder, spec.name, spec.default or 0, minimum=-(1 << 62))}
    _warned_repeats.add(spec.name)  # the callbacks, loaded before this runs, have said so already
    try:
        return readers[spec.kind]()
    except ConfigError:
        return raw


class _Holder:
    """A bare object to run a reader on."""


def _apply_rule_to_what_sr3_shows() -> None:
    """Make sr3's ``Config.check_undeclared_options`` apply the one-value rule to mailingest's options.

    Each callback gets a deep copy of the flow's options, so what a callback reads never reaches
    the object ``sr3 show`` prints.  sr3 calls ``check_undeclared_options`` on that object once
    every callback is loaded; it would keep the *first* of repeated durations, print a list for
    a repeated str, and turn a repeated count into 0.  The wrapper first reduces every option a
    mailingest callback declared (only those) to the value the callback uses.
    """
    try:
        from sarracenia.config import Config
    except ImportError:  # pragma: no cover - sarracenia is always there when sr3 runs us
        return
    original = Config.check_undeclared_options
    if getattr(original, "_mailingest_rule", False):
        return

    def check_undeclared_options(self: Any) -> Any:
        present = vars(self)
        for name, spec in list(_DECLARED.items()):
            if name in present:
                setattr(self, name, _quietly_normalised(spec, present[name]))
        return original(self)

    check_undeclared_options._mailingest_rule = True  # type: ignore[attr-defined]
    check_undeclared_options.__doc__ = original.__doc__
    Config.check_undeclared_options = check_undeclared_options


# -- connection settings --------------------------------------------------------------------------

def connection_settings(options: Any) -> ConnectionSettings:
    """Connection settings of a flow (TLS, timeouts, OAuth2); pass ``.oauth2`` to
    :func:`mailingest.mailbox.account.resolve_account`.

    :raises ConfigError: bad tlsRigour, unreadable mailCaFile, or bad OAuth2 options.
    """
    timeout = duration(options, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT
    rigour = text(options, "tlsRigour", "normal") or "normal"
    ca_file = _path(text(options, "mailCaFile"))
    settings = ConnectionSettings(
        timeout=timeout,
        tls_rigour=rigour,
        ca_file=ca_file,
        allow_plaintext=flag(options, "mailAllowPlaintext", False),
        oauth2=oauth2_settings(options, timeout, rigour, ca_file),
    )
    return settings


def oauth2_settings(options: Any, timeout: float = DEFAULT_TIMEOUT, rigour: str = "normal",
                    ca_file: Optional[str] = None) -> Optional[OAuth2Settings]:
    """The flow's OAuth2 settings (:func:`mailingest.oauth2.config.settings_from_options` reads the
    ``mailOAuth2*`` options with :func:`text`), or None when ``mailOAuth2Provider`` is not set.

    :raises ConfigError: bad values; an unreadable or world-readable secret, key or certificate
        file (checked now, so a flow fails at start rather than at every cycle).
    """
    return settings_from_options(lambda name, default: text(options, name, default), timeout=timeout,
                                 tls_rigour=rigour, ca_file=ca_file)


def _path(value: Optional[str]) -> Optional[str]:
    return os.path.expanduser(value) if value else None


# -- the connection budget of an account (mailingest.mailbox.budget) -------------------------------

#: the per-account session budget (poll and download)
SESSION_BUDGET_OPTIONS = (
    Option("mailSessionMax", "count", 0),
    Option("mailSessionWait", "duration", DEFAULT_WAIT_SECONDS),
    Option("mailSessionBroker", "str", None),
)


def session_budget(options: Any, flow_broker: Any, should_stop: Any) -> Any:
    """A :class:`SessionBudget` for ``mailSessionMax`` (a :class:`NoBudget` when it is 0), its slots
    on ``mailSessionBroker`` or else ``flow_broker`` (the poll's post_broker, the download's broker).

    :raises ConfigError: ``mailSessionMax`` set but no broker to count the sessions on.
    """
    declare(options, *SESSION_BUDGET_OPTIONS)
    max_sessions = count(options, "mailSessionMax", 0)
    if not max_sessions:
        return NoBudget()
    url = text(options, "mailSessionBroker")
    if url and hasattr(getattr(options, "credentials", None), "validate_urlstr"):
        found, credential = options.credentials.validate_urlstr(url)  # its password from credentials.conf
        url = broker_url_of(credential) if found else url
    url = url or broker_url_of(flow_broker)
    if not url:
        raise ConfigError("mailSessionMax needs a broker to count sessions on: set mailSessionBroker "
                          "(an amqp:// URL every poll and download of the account uses)")
    wait = duration(options, "mailSessionWait", DEFAULT_WAIT_SECONDS)
    return SessionBudget(shared_locks(url), max_sessions, wait, should_stop)


# -- a highly available poll under sr3's vip (mailingest.poller.ha) -------------------------------

def poll_lease(options: Any, account_display: str) -> Tuple[ActivePollLease, str]:
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


def _poll_queue_and_split_exchanges(options: Any) -> Tuple[str, List[str]]:
    """The queue sr3 declared for a vip poll, and the exchanges it posts to with
    ``post_exchangeSplit`` (sr3 binds only one of them; [] without a split)."""
    queue = ""
    for subscription in getattr(options, "subscriptions", None) or []:
        try:
            queue = str(subscription["queue"]["name"])
            break
        except (KeyError, TypeError):
            continue
    exchanges: List[str] = []
    for publisher in getattr(options, "publishers", None) or []:
        try:
            names = publisher["exchange"]
        except (KeyError, TypeError):
            continue
        if isinstance(names, (list, tuple)) and len(names) > 1:
            exchanges = [str(name) for name in names]
    return queue, exchanges
