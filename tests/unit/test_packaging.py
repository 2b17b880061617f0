"""Packaging invariants that need no build (the build itself: tests/integration/test_wheel_install.py)."""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

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


def tracked_text_files() -> list[Path]:
    """The repository's files as git tracks them (what a clone has), less binary ones."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    paths = [REPO / name for name in listed.decode().split("\0") if name]
    return [p for p in paths if p.is_file() and not p.is_symlink() and b"\0" not in p.read_bytes()[:8192]]


def test_the_version_string_is_written_nowhere_but_the_package_and_the_changelog():
    version = re.compile(rf"(?<![\w.]){re.escape(mailingest.__version__)}(?![\w.]*\d)")
    allowed = {REPO / "plugins" / "mailingest" / "__init__.py", REPO / "CHANGELOG.md"}
    elsewhere = [p.relative_to(REPO).as_posix() for p in tracked_text_files()
                 if p not in allowed and version.search(p.read_text(errors="replace"))]
    assert not elsewhere, f"{mailingest.__version__} is also written in {elsewhere}: say mailingest-<version> instead"


def released_versions() -> list[Version]:
    headings = re.findall(r"^## (\S+)", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)
    return [Version(h) for h in headings if h != "Unreleased"]


def test_the_changelog_has_an_unreleased_section_or_one_for_the_current_version():
    headings = re.findall(r"^## (\S+)", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings and headings[0] in ("Unreleased", mailingest.__version__), headings


def test_unreleased_changes_carry_a_development_version_newer_than_every_release():
    """pip does not reinstall a wheel of the version already installed ('pip install --upgrade'
    says 'already installed with the same version'): the changes after a release need a version
    of their own, a pre-release of the next one, until that release gets its heading."""
    heading = re.findall(r"^## (\S+)", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)[0]
    current = Version(mailingest.__version__)
    if heading == "Unreleased":
        assert current.is_prerelease, f"{current} with an Unreleased section: use e.g. {current.major}.{current.minor + 1}.0.dev0"
        assert all(current > released for released in released_versions()), (current, released_versions())
    else:
        assert Version(heading) == current
        assert not current.is_prerelease


def test_the_quickstart_names_every_dependency_pip_installs():
    """Operators read there what pip will fetch (and that netifaces compiles)."""
    quickstart = (REPO / "docs" / "quickstart.md").read_text()
    declared = [Requirement(line).name for line in setup_cfg()["options"]["install_requires"].splitlines()
                if line.strip() and not line.strip().startswith("#")]
    assert len(declared) >= 10
    missing = [name for name in declared if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", quickstart)]
    assert not missing, f"docs/quickstart.md does not name {missing}"


def test_the_package_examples_folder_is_the_repository_examples_folder_not_a_copy():
    link = REPO / "plugins" / "mailingest" / "examples"
    assert link.is_symlink(), "plugins/mailingest/examples must stay a symlink to ../../examples"
    assert link.resolve() == (REPO / "examples").resolve()


def test_the_example_configs_are_package_data():
    package_data = setup_cfg()["options.package_data"]["mailingest"].split()
    assert "examples/*/*.conf" in package_data


def test_sr3_files_of_passwords_and_site_settings_are_kept_out_of_the_wheel_and_the_sdist():
    from mailingest.cli.examples import NOT_EXAMPLES

    excluded = setup_cfg()["options.exclude_package_data"]["mailingest"].split()
    assert {f"examples/*/{name}" for name in NOT_EXAMPLES} <= set(excluded)
    manifest = [line.split() for line in (REPO / "MANIFEST.in").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    globally_excluded = {word for line in manifest if line[0] == "global-exclude" for word in line[1:]}
    assert NOT_EXAMPLES <= globally_excluded
    assert not [line for line in manifest if line[0] == "graft"], "graft ships whatever lies in a folder"


def test_the_metadata_json_schema_is_package_data():
    package_data = setup_cfg()["options.package_data"]["mailingest.mime"].split()
    assert "metadata.schema.json" in package_data
    assert (REPO / "plugins" / "mailingest" / "mime" / "metadata.schema.json").is_file()
