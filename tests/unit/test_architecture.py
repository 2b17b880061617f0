"""The package's design, read from its import graph (ast over plugins/mailingest, no import run).

Layers, lowest first (docs/design.md, "Pieces"); a module may import its own layer and those
below, never one above:

0. foundation  ``errors``, ``atomic``
1. core        ``mime/`` (the decoder, pure), ``security/`` (keyring, TLS contexts), ``trust/`` (sender
               trust and machine-mail logic, pure)
2. oauth2      ``oauth2/``
3. protocol    ``mailbox/`` (accounts, IMAP/POP3 sessions, message identity)
4. services    ``poller/`` (for the poll), ``fetcher/`` (for the download), ``verify/`` (DNS, DKIM, ARC)
5. sr3 glue    ``poll``, ``download``, ``decode``, ``decodeprocess``, ``postbatch``, ``sr3log``, ``options``, ``screensettings``, ``cli/``,
               ``__main__``

The pure modules import neither sarracenia nor the network, and only pure or foundation modules.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

import mailingest

PACKAGE_DIR = Path(mailingest.__file__).resolve().parent

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("mailingest.errors", "mailingest.atomic", "mailingest.backoff")),
    ("core", ("mailingest.mime", "mailingest.security", "mailingest.trust")),
    ("oauth2", ("mailingest.oauth2",)),
    ("protocol", ("mailingest.mailbox",)),
    ("services", ("mailingest.poller", "mailingest.fetcher", "mailingest.verify")),
    ("sr3 glue", ("mailingest.poll", "mailingest.download", "mailingest.decode", "mailingest.decodeprocess",
                  "mailingest.postbatch", "mailingest.sr3log",
                  "mailingest.options", "mailingest.settings", "mailingest.screensettings", "mailingest.cli",
                  "mailingest.__main__", "mailingest")),
]

#: Pure: no sarracenia, no network; the decoder and the pure helpers of the protocol layer.
PURE = ("mailingest.mime", "mailingest.trust", "mailingest.mailbox.refs", "mailingest.mailbox.sasl",
        "mailingest.mailbox.replies")

FORBIDDEN_IN_PURE = ("sarracenia", "socket", "ssl", "imaplib", "poplib", "imapclient", "urllib.request",
                     "http.client", "http.server", "dns", "dkim")

#: The foundation's own exceptions to FORBIDDEN_IN_PURE, each with its reason.
FOUNDATION_MAY_IMPORT = {
    "mailingest.atomic": {"socket"},  # socket.gethostname() tags temporary names; no connection
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every module *name* imports, anywhere in the file (lazy imports and TYPE_CHECKING included)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in MODULES else base)
    return found


GRAPH: dict[str, set[str]] = {name: imports_of(name) for name in MODULES}


def within(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layer_of(name: str) -> int:
    # the most specific prefix wins ("mailingest" itself is only the package's __init__)
    best = max(((len(p), i) for i, (_, prefixes) in enumerate(LAYERS) for p in prefixes
                if name == p or (p != "mailingest" and name.startswith(p + "."))), default=None)
    if best is None:
        raise AssertionError(f"{name} is in no layer: add it to LAYERS (and to docs/design.md)")
    return best[1]


def unit_of(name: str) -> str:
    """The subpackage a module belongs to (mailingest.mime.parse -> mailingest.mime), or itself."""
    parts = name.split(".")
    return ".".join(parts[:2])


def test_every_module_belongs_to_exactly_one_layer():
    for name in MODULES:
        layer_of(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_a_layer_above_its_own(name):
    mine = layer_of(name)
    above = sorted(f"{target} ({LAYERS[layer_of(target)][0]})" for target in GRAPH[name]
                   if target in MODULES and layer_of(target) > mine)
    assert not above, f"{name} ({LAYERS[mine][0]}) imports from a higher layer: {above}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if within(n, PURE)))
def test_the_pure_core_imports_neither_sarracenia_nor_the_network(name):
    bad = sorted(t for t in GRAPH[name] if within(t, FORBIDDEN_IN_PURE))
    assert not bad, f"{name} is pure but imports {bad}"
    impure = sorted(t for t in GRAPH[name] if t in MODULES and not within(t, PURE) and layer_of(t) > 0)
    assert not impure, f"{name} is pure but imports the impure {impure}"


@pytest.mark.parametrize("name", LAYERS[0][1])
def test_the_foundation_imports_no_other_mailingest_module_and_no_network(name):
    assert not [t for t in GRAPH[name] if t in MODULES]
    bad = {t for t in GRAPH[name] if within(t, FORBIDDEN_IN_PURE)} - FOUNDATION_MAY_IMPORT.get(name, set())
    assert not bad, f"{name} imports {sorted(bad)}"


def test_subpackages_import_each_other_without_a_cycle():
    edges: dict[str, set[str]] = {}
    for name, targets in GRAPH.items():
        for target in targets:
            if target in MODULES and unit_of(target) != unit_of(name):
                edges.setdefault(unit_of(name), set()).add(unit_of(target))
    done: set[str] = set()

    def visit(unit: str, path: list[str]) -> None:
        if unit in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(unit):] + [unit]))
        if unit in done:
            return
        for target in sorted(edges.get(unit, ())):
            visit(target, path + [unit])
        done.add(unit)

    for unit in sorted(edges):
        visit(unit, [])


def test_the_graph_reader_sees_the_imports_that_matter():
    # guards the test itself: a reader that found nothing would pass every rule above
    assert "mailingest.mime.headers" in GRAPH["mailingest.mime.parse"]
    assert "mailingest.cli" in GRAPH["mailingest.__main__"]
    assert "mailingest.mailbox.imap" in GRAPH["mailingest.mailbox.factory"]
    assert "sarracenia.flowcb" in GRAPH["mailingest.poll"]
