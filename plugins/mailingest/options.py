"""sr3 option declarations shared by the callbacks, and their translation into settings objects.

This is the one place that maps sr3's camelCase options onto Python settings; below it, code
never reads ``self.o``.  Every option is documented in docs/configuration.md.
"""

from __future__ import annotations

from typing import Any, List

from mailingest.connection import ConnectionSettings

DEFAULT_TIMEOUT = 60.0


def declare_connection_options(options: Any) -> None:
    """Options every mail connection honours (poll and download)."""
    options.add_option("mailCaFile", "str", None)
    options.add_option("mailAllowPlaintext", "flag", False)
    options.add_option("tlsRigour", "str", "normal")


def connection_settings(options: Any) -> ConnectionSettings:
    """:raises ConfigError: bad tlsRigour or unreadable mailCaFile."""
    timeout = getattr(options, "timeout", None) or DEFAULT_TIMEOUT
    return ConnectionSettings(
        timeout=float(timeout),
        tls_rigour=str(getattr(options, "tlsRigour", None) or "normal"),
        ca_file=getattr(options, "mailCaFile", None) or None,
        allow_plaintext=bool(getattr(options, "mailAllowPlaintext", False)),
    )


def as_list(value: Any) -> List[str]:
    """An sr3 list option as a flat list: repeated lines and comma-separated items both work."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out: List[str] = []
    for item in items:
        out.extend(part.strip() for part in str(item).split(",") if part.strip())
    return out
