"""Packaging invariants that need no build (the build itself: tests/integration/test_wheel_install.py)."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import mailingest

REPO = Path(__file__).resolve().parents[2]


def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    return parser


def test_the_version_is_written_once_in_the_package_and_read_by_setup_cfg():
    assert setup_cfg()["metadata"]["version"].strip() == "attr: mailingest.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]|rc)?\d*(\.dev\d+)?", mailingest.__version__)
    stray = [p for p in REPO.glob("*.*") if p.suffix in (".cfg", ".toml", ".py")
             and re.search(r"^\s*version\s*=\s*['\"]?\d", p.read_text(), re.MULTILINE)]
    assert not stray, f"a second version string: {stray}"


def test_the_changelog_has_an_unreleased_section_or_one_for_the_current_version():
    headings = re.findall(r"^## (\S+)", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings and headings[0] in ("Unreleased", mailingest.__version__), headings


def test_the_package_examples_folder_is_the_repository_examples_folder_not_a_copy():
    link = REPO / "plugins" / "mailingest" / "examples"
    assert link.is_symlink(), "plugins/mailingest/examples must stay a symlink to ../../examples"
    assert link.resolve() == (REPO / "examples").resolve()


def test_the_example_configs_are_package_data():
    package_data = setup_cfg()["options.package_data"]["mailingest"].split()
    assert "examples/*/*.conf" in package_data


def test_the_metadata_json_schema_is_package_data():
    package_data = setup_cfg()["options.package_data"]["mailingest.mime"].split()
    assert "metadata.schema.json" in package_data
    assert (REPO / "plugins" / "mailingest" / "mime" / "metadata.schema.json").is_file()
