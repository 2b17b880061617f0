"""sr3 options: declaring them to sr3 and reading them with one rule, by kind.

The typed readers of :mod:`mailingest.settings`, the one place that reads sr3's camelCase
options into settings objects; below it, code never reads ``self.o``.  Every option is
documented in docs/configuration.md (connection and authentication options:
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
:func:`show_values_used` makes sr3's own post-load check (the values ``sr3 show`` prints) use the
same rule, so ``sr3 show`` shows the value really used.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from mailingest.errors import ConfigError

logger = logging.getLogger(__name__)

KINDS = ("str", "list", "flag", "duration", "count", "size")


class Option(NamedTuple):
    """An option a callback declares: sr3 name, kind (one of :data:`KINDS`) and default."""

    name: str
    kind: str
    default: Any


#: options already reported as repeated (one warning per option and process: a log throttle)
_warned_repeats: set[str] = set()

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([smhdw]?)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_FLAG_WORDS = {"true": True, "yes": True, "on": True, "1": True,
               "false": False, "no": False, "off": False, "0": False}


# -- declaring ------------------------------------------------------------------------------------

def declare(options: Any, *specs: Option) -> None:
    """Declare *specs* to sr3 (``add_option``), after reducing a repeated option to its last value,
    so sr3 converts one value, not a list."""
    for spec in specs:
        if spec.kind not in KINDS:
            raise ValueError(f"option {spec.name}: unknown kind {spec.kind!r}")
        raw = getattr(options, spec.name, None)
        if isinstance(raw, list) and raw:
            setattr(options, spec.name, _last(spec.name, raw, spec.kind))
        options.add_option(spec.name, spec.kind, spec.default)


# -- reading --------------------------------------------------------------------------------------

def read(options: Any, spec: Option) -> Any:
    """The value of the option *spec* names, by its kind; its default when not set."""
    if spec.kind == "str":
        return text(options, spec.name, spec.default)
    if spec.kind == "list":
        return values(options, spec.name) or list(spec.default or [])
    if spec.kind == "flag":
        return flag(options, spec.name, bool(spec.default))
    if spec.kind == "duration":
        return duration(options, spec.name, spec.default or 0.0)
    if spec.kind in ("count", "size"):
        return count(options, spec.name, spec.default or 0)
    raise ValueError(f"option {spec.name}: unknown kind {spec.kind!r}")


def text(options: Any, name: str, default: str | None = None) -> str | None:
    """A *str* option: the last value given, stripped; *default* when unset or empty."""
    raw = _scalar(options, name, "str")
    value = str(raw).strip() if raw is not None and raw is not True else ""
    result = value or default
    _keep(options, name, result)
    return result


class ItemsUsed(list):  # type: ignore[type-arg]
    """The items a *list* option reader settled on, written back in place of sr3's lines: read
    again, they are the items (not lines whose last one would win)."""


def values(options: Any, name: str) -> list[str]:
    """A *list* option: the items of the last line given, split at commas (``INBOX,Archive``).
    Reading the option again gives the same items."""
    raw = getattr(options, name, None)
    if isinstance(raw, ItemsUsed):
        return list(raw)
    if isinstance(raw, (list, tuple)):
        raw = _last(name, list(raw), "list") if raw else None
    items = [part.strip() for part in str(raw).split(",")] if raw not in (None, True) else []
    result = [item for item in items if item]
    _keep(options, name, ItemsUsed(result))
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


def _last(name: str, given: list[Any], kind: str) -> Any:
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
    _warned_repeats.add(spec.name)  # the callbacks, loaded before this runs, have said so already
    try:
        if spec.kind in ("count", "size"):  # shown as given, even below the reader's minimum
            return count(holder, spec.name, spec.default or 0, minimum=-(1 << 62))
        return read(holder, spec)
    except ConfigError:
        return raw


class _Holder:
    """A bare object to run a reader on."""


def show_values_used(known: Mapping[str, Option]) -> None:
    """Make sr3's ``Config.check_undeclared_options`` apply the one-value rule to the options *known*
    (mailingest's, see :data:`mailingest.settings.ALL_OPTIONS`).

    Each callback gets a deep copy of the flow's options, so what a callback reads never reaches
    the object ``sr3 show`` prints.  sr3 calls ``check_undeclared_options`` on that object once
    every callback is loaded; it would keep the *first* of repeated durations, print a list for
    a repeated str, and turn a repeated count into 0.  The wrapper first reduces every option
    in *known* (only those) to the value the callback uses.  Installed once per process (it
    wraps sr3's class, on the first call).
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
        for name, spec in known.items():
            if name in present:
                setattr(self, name, _quietly_normalised(spec, present[name]))
        return original(self)

    check_undeclared_options._mailingest_rule = True  # type: ignore[attr-defined]
    check_undeclared_options.__doc__ = original.__doc__
    Config.check_undeclared_options = check_undeclared_options
