"""Every option a callback declares is documented with its default, in the docs operators read."""

import re
import types
from pathlib import Path

import pytest

from mailingest import options as opt
from mailingest.options import KINDS
from mailingest.settings import ALL_OPTIONS

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "plugins" / "mailingest"
DOCS = {
    "configuration": (REPO / "docs" / "configuration.md").read_text(encoding="utf-8"),
    "authentication": (REPO / "docs" / "authentication.md").read_text(encoding="utf-8"),
}


def declared_options() -> list:
    names = set()
    for source in PLUGINS.glob("*.py"):
        names.update(re.findall(r'(?:add_option|Option)\(\s*"(\w+)"', source.read_text(encoding="utf-8")))
    names.update(ALL_OPTIONS)
    return sorted(names)


def test_the_callbacks_declare_options():
    assert {"mailFolder", "mailAfterDownload", "mailDecodeAnnounce", "mailCaFile"} <= set(declared_options())


@pytest.mark.parametrize("option", declared_options())
def test_every_declared_option_has_a_row_in_the_docs(option):
    row = re.compile(r"^\|\s*`%s`\s*\|" % re.escape(option), re.MULTILINE)
    assert any(row.search(text) for text in DOCS.values()), \
        f"{option} is declared but has no table row in docs/configuration.md or docs/authentication.md"


DOC_ROW = re.compile(r"^\|\s*`(?P<name>\w+)`\s*\|\s*(?P<kind>\w+)\s*\|\s*(?P<default>[^|]*)\|", re.MULTILINE)


def documented_defaults() -> list:
    rows = []
    for doc, text in DOCS.items():
        rows += [(doc, m["name"], m["kind"], m["default"].strip()) for m in DOC_ROW.finditer(text)
                 if m["name"] in ALL_OPTIONS and m["kind"] in KINDS]
    return rows


#: options whose default depends on other settings: declared "not set", documented by meaning
DEFAULT_DEPENDS = {
    "mailReannounceAfter": "a duration to operators; its default depends on the protocol",
    "mailTrustCheck": "on when another trust option is set",
    "mailUntrusted": "announce; set, it turns the sender check on",
    "mailMachineMail": "announce; set, it turns the sender check on",
    "mailMachineClasses": "every machine class",
}


@pytest.mark.parametrize("doc, name, kind, default", documented_defaults())
def test_the_docs_state_each_options_kind_and_default_as_the_code_does(doc, name, kind, default):
    spec = ALL_OPTIONS[name]
    if name in DEFAULT_DEPENDS:  # declared without a default ("not set" must stay visible); the docs say what it means
        return
    assert kind == spec.kind, f"docs/{doc}.md says {name} is a {kind}, the code declares a {spec.kind}"
    written = re.match(r"`([^`]*)`", default)
    if written is None:  # "none", "the provider's", "from the secret file ...": nothing set
        assert spec.default in (None, []), f"docs/{doc}.md gives {name} no default, the code {spec.default!r}"
        return
    stated = opt.read(types.SimpleNamespace(**{name: written.group(1)}), spec)
    assert stated == opt.read(types.SimpleNamespace(), spec), \
        f"docs/{doc}.md says {name} defaults to {written.group(1)}, the code to {spec.default!r}"
