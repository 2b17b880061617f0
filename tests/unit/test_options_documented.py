"""Every option a callback declares is documented with its default, in the docs operators read."""

import re
from pathlib import Path

import pytest

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
