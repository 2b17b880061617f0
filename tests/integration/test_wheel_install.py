"""Installable without the checkout (issue 19): the wheel and the sdist hold what an operator
needs, and a virtualenv with only the wheel and its declared dependencies runs the examples.

The wheel and the sdist are built once per module with ``python -m build`` from a copy of the
source tree (so the checkout gets no build/ or egg-info).  The fresh virtualenv is made without
``--system-site-packages``; the wheel is installed into it with pip, and its declared
dependencies (Requires-Dist, followed recursively, extras and markers honoured) are taken from the
shared test virtualenv instead of PyPI: each distribution's top-level files are symlinked into one
directory that a ``.pth`` file puts on the new venv's path.  Nothing else of the shared venv is
visible, so an undeclared dependency makes the run fail as it would for an operator.
"""

from __future__ import annotations

import ast
import email.parser
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import eml_files, make_home, wait_until
from tests.mailgen import sample_message
from tests.sr3env import REPO, NoticeCollector, Sr3Home, Sr3Process

pytestmark = pytest.mark.integration

#: sr3 features (sarracenia.featuredetection) that mailingest's flows rely on, although sr3
#: itself treats them as optional: RabbitMQ brokers, the sftp stack every poll loads, vip.
SR3_FEATURES_RELIED_ON = ("amqp", "sftp", "vip")

JUNK = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                              ".pytest_cache", ".mypy_cache", ".ruff_cache", "demo-output", "results")


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path

    def wheel_names(self) -> list[str]:
        with zipfile.ZipFile(self.wheel) as archive:
            return archive.namelist()

    def wheel_text(self, name: str) -> str:
        with zipfile.ZipFile(self.wheel) as archive:
            return archive.read(name).decode("utf-8")

    def metadata(self) -> email.message.Message:
        dist_info = next(n.split("/")[0] for n in self.wheel_names() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(self.wheel_text(f"{dist_info}/METADATA"))

    def requirements(self) -> list[Requirement]:
        """Requires-Dist without extras (what ``pip install mailingest`` installs)."""
        reqs = [Requirement(line) for line in self.metadata().get_all("Requires-Dist") or []]
        return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


#: what an operator's or a developer's checkout accumulates beside the source: sr3's files of
#: passwords and site settings, keys, downloaded mail, demo and bench output.  Planted in the copy
#: that is built; none of it may ship.
DECOYS = {
    "examples/poll/credentials.conf": "amqp://bunny:decoy-Secret-1@localhost/\n",
    "examples/subscribe/credentials.conf": "imaps://alice:decoy-Secret-2@mail.example.org/\n",
    "examples/poll/default.conf": "declare env MAIL_USER=alice\n",
    "examples/subscribe/admin.conf": "admin amqp://root@localhost/\n",
    "examples/poll/mail.conf.orig": "callback mailingest.poll\n",
    "examples/tls/client.key": "decoy key\n",
    "docs/server.pem": "decoy certificate\n",
    "docs/message.eml": "Subject: decoy\n\nbody\n",
    "demo-output/INBOX/1.1.eml": "Subject: decoy\n\nbody\n",
    "bench/results/run.json": "{}\n",
    "plugins/mailingest/mime/notes.txt": "decoy\n",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    source = tmp_path_factory.mktemp("source") / "mailingest"
    shutil.copytree(REPO, source, symlinks=True, ignore=JUNK)
    for relative, text in DECOYS.items():
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_text(text)
    out = source.parent / "dist"
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"python -m build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    # the copy holds the unit tests' sample secrets, which the session's secret scan would report
    shutil.rmtree(source)
    return Built(wheel=next(out.glob("*.whl")), sdist=next(out.glob("*.tar.gz")))


def repository_examples() -> dict[str, bytes]:
    return {path.relative_to(REPO / "examples").as_posix(): path.read_bytes()
            for path in sorted((REPO / "examples").glob("*/*.conf"))}


# -- what the archives hold ----------------------------------------------------------------------
def test_the_wheel_holds_the_package_its_examples_and_licence_and_no_test_or_bench_file(built):
    import mailingest

    names = built.wheel_names()
    dist_info = f"mailingest-{mailingest.__version__}.dist-info"
    assert built.wheel.name.startswith(f"mailingest-{mailingest.__version__}-py3-none-any")
    assert all(n.startswith(("mailingest/", dist_info + "/")) for n in names), names
    # every module of every subpackage (mime/, mailbox/, poller/, ... : docs/design.md, "Pieces")
    modules = {p.relative_to(REPO / "plugins").as_posix() for p in (REPO / "plugins" / "mailingest").rglob("*.py")}
    assert {n for n in names if n.endswith(".py")} == modules
    assert {"mailingest/mime/__init__.py", "mailingest/cli/__init__.py"} <= modules
    with zipfile.ZipFile(built.wheel) as archive:
        shipped = {n.removeprefix("mailingest/examples/"): archive.read(n)
                   for n in names if n.startswith("mailingest/examples/")}
    assert shipped == repository_examples()
    assert "mailingest/mime/metadata.schema.json" in names, "the metadata.json schema is package data"
    assert not [n for n in names if re.search(r"(^|/)(tests?|bench|conftest)(/|\.py$)|(^|/)test_", n)]
    assert "mailingest = mailingest.cli:main" in built.wheel_text(f"{dist_info}/entry_points.txt")
    assert "GNU GENERAL PUBLIC LICENSE" in built.wheel_text(f"{dist_info}/licenses/LICENSE")
    metadata = built.metadata()
    assert metadata["Version"] == mailingest.__version__
    assert "GPL-2.0-or-later" in (metadata["License-Expression"] or metadata["License"])


def test_the_sdist_holds_the_examples_docs_changelog_and_licence_metadata(built):
    import mailingest

    root = f"mailingest-{mailingest.__version__}"
    with tarfile.open(built.sdist) as archive:
        names = set(archive.getnames())
        pkg_info = email.parser.Parser().parsestr(archive.extractfile(f"{root}/PKG-INFO").read().decode())
        examples = {n.removeprefix(f"{root}/plugins/mailingest/examples/"): archive.extractfile(n).read()
                    for n in names if n.startswith(f"{root}/plugins/mailingest/examples/") and n.endswith(".conf")}
    assert examples == repository_examples()
    assert {f"{root}/examples/{relative}" for relative in repository_examples()} <= names
    assert {f"{root}/docs/{p.name}" for p in (REPO / "docs").glob("*.md")} <= names
    assert {f"{root}/{name}" for name in ("LICENSE", "CHANGELOG.md", "README.md", "setup.cfg", "pyproject.toml")} <= names
    assert "GPL-2.0-or-later" in (pkg_info["License-Expression"] or pkg_info["License"])
    assert pkg_info["License-File"] == "LICENSE"
    assert not [n for n in names if n.startswith((f"{root}/tests/", f"{root}/bench/"))]


def test_the_archives_ship_no_credentials_keys_mail_or_generated_output_lying_in_the_checkout(built):
    """The build ran on a copy holding DECOYS: the sdist holds exactly the source it names by
    kind (modules, docs, examples, licence, changelog, build metadata), the wheel none of them."""
    import mailingest

    root = f"mailingest-{mailingest.__version__}"
    with tarfile.open(built.sdist) as archive:
        files = {m.name.removeprefix(f"{root}/") for m in archive.getmembers() if m.isfile()}
        contents = b"".join(archive.extractfile(m).read() for m in archive.getmembers() if m.isfile())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "plugins" / "mailingest").rglob("*.py")}
    examples = {f"examples/{relative}" for relative in repository_examples()}
    expected = ({"README.md", "CHANGELOG.md", "LICENSE", "MANIFEST.in", "PKG-INFO", "setup.cfg", "pyproject.toml",
                 "plugins/mailingest/mime/metadata.schema.json"}
                | {p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md")}
                | examples | {f"plugins/mailingest/{relative}" for relative in examples} | modules)
    metadata = {n for n in files if n.startswith("plugins/mailingest.egg-info/")}
    assert files - metadata == expected, f"unexpected: {sorted(files - metadata - expected)}, missing: {sorted(expected - files)}"
    wheel_names = built.wheel_names()
    for relative in DECOYS:
        name = relative.rsplit("/", 1)[-1]
        assert not [n for n in wheel_names if n.endswith("/" + name)], f"{relative} shipped in the wheel"
    with zipfile.ZipFile(built.wheel) as archive:
        contents += b"".join(archive.read(n) for n in wheel_names)
    for secret in (b"decoy-Secret-1", b"decoy-Secret-2"):
        assert secret not in contents


def test_the_declared_requirements_cover_every_third_party_import_and_the_sr3_features_relied_on(built):
    from sarracenia.featuredetection import features

    declared = {canonicalize_name(r.name) for r in built.requirements()}
    by_module = importlib.metadata.packages_distributions()
    imported: set[str] = set()
    with zipfile.ZipFile(built.wheel) as archive:
        for name in archive.namelist():
            if name.endswith(".py"):
                imported |= top_level_imports(archive.read(name).decode("utf-8"))
    third_party = sorted(imported - set(sys.stdlib_module_names) - {"mailingest", "__future__"})
    assert third_party, "the scan found no third-party import at all"
    missing = {module: by_module.get(module) for module in third_party
               if not {canonicalize_name(d) for d in by_module.get(module, [])} & declared}
    assert not missing, f"imported but not declared in install_requires: {missing}"
    for feature in SR3_FEATURES_RELIED_ON:
        for module in features[feature]["modules_needed"]:
            dists = {canonicalize_name(d) for d in by_module.get(module.split(".")[0], [])}
            assert dists & declared, f"sr3 feature {feature!r} needs {module} ({dists}): not declared"


def top_level_imports(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


# -- a fresh virtualenv with only the wheel and its declared dependencies --------------------------
@dataclass(frozen=True)
class Venv:
    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env


@pytest.fixture(scope="module")
def venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    # pip runs inside the new venv (--python), with no PYTHONPATH: nothing else looks installed
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install",
                             "--no-deps", "--no-index", "--disable-pip-version-check", "-q", str(built.wheel)],
                            env=Venv(root).env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    deps = root / "declared-dependencies"
    linked = link_distributions(dependency_closure(built.requirements()), deps)
    site = subprocess.run([root / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "declared_dependencies.pth").write_text(f"{deps}\n")
    (root / "bin" / "sr3").write_text(  # the console script metpx-sr3 would install
        f"#!{root / 'bin' / 'python'}\nimport sys\nfrom sarracenia.sr import main\nsys.exit(main())\n")
    (root / "bin" / "sr3").chmod(0o755)
    assert {"metpx-sr3", "amqp", "paramiko", "netifaces"} <= linked
    return Venv(root)


def dependency_closure(requirements: list[Requirement]) -> dict[str, importlib.metadata.Distribution]:
    """Every distribution *requirements* need, recursively, as installed in this (the test) venv."""
    found: dict[str, importlib.metadata.Distribution] = {}
    pending = [(r, "") for r in requirements]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        dist = importlib.metadata.distribution(name)
        assert requirement.specifier.contains(dist.version, prereleases=True), f"{name} {dist.version} {requirement}"
        extras_needed = list(requirement.extras)
        if name not in found:
            found[name] = dist
            extras_needed.append("")
        for wanted in extras_needed:
            pending += [(Requirement(line), wanted) for line in dist.requires or []]
    return found


def link_distributions(dists: dict[str, importlib.metadata.Distribution], target: Path) -> set[str]:
    """Symlink each distribution's top-level files and directories (packages, modules, dist-info) into *target*."""
    target.mkdir()
    for dist in dists.values():
        site = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or []} - {"..", "__pycache__"}
        for top in tops:
            if (site / top).exists() and not (target / top).exists():
                (target / top).symlink_to(site / top)
    return set(dists)


def test_the_fresh_venv_imports_mailingest_from_the_wheel_not_the_checkout(venv):
    result = subprocess.run([venv.bin / "python", "-c", "import sys, mailingest; print(mailingest.__file__); print(sys.prefix)"],
                            env=venv.env, capture_output=True, text=True, check=True)
    module_file, prefix = result.stdout.split()
    assert Path(prefix) == venv.root
    assert Path(module_file).is_relative_to(venv.root / "lib"), module_file
    # the shared test venv has pika (the test extra), but the wheel does not declare it: not visible
    hidden = subprocess.run([venv.bin / "python", "-c", "import pika"], env=venv.env, capture_output=True, text=True)
    assert "No module named 'pika'" in hidden.stderr


def test_examples_then_sr3_add_in_an_empty_directory_installs_mailingest_s_configs(venv, tmp_path):
    workdir = tmp_path / "empty"
    workdir.mkdir()
    env = dict(venv.env, XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    wrote = subprocess.run([venv.bin / "mailingest", "examples", "."], cwd=workdir, env=env,
                           capture_output=True, text=True, timeout=60)
    assert wrote.returncode == 0, wrote.stderr
    assert "sr3 add poll/mail.conf" in wrote.stdout
    callbacks = {"poll/mail.conf": ["mailingest.poll"], "subscribe/downloademail.conf": ["mailingest.download"],
                 "subscribe/decodeemail.conf": ["mailingest.download", "mailingest.decode"],
                 "subscribe/attachments-csv.conf": []}  # a plain sr3 subscriber of the decoded parts
    assert set(callbacks) == set(repository_examples()), "every example is added and checked"
    added = subprocess.run([venv.bin / "sr3", "add", *callbacks], cwd=workdir, env=env,
                           capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stdout + added.stderr
    for relative, names in callbacks.items():
        installed = (tmp_path / "config" / "sr3" / relative).read_bytes()
        assert installed == repository_examples()[relative]
        for name in names:
            assert f"callback {name}".encode() in installed


class VenvSr3Home(Sr3Home):
    """An sr3 home whose commands run with the fresh venv's sr3, from an examples directory."""

    def __init__(self, home: Sr3Home, venv: Venv, workdir: Path) -> None:
        self.__dict__.update(home.__dict__)
        self.venv = venv
        self.workdir = workdir

    @property
    def env(self) -> dict[str, str]:
        return dict(self.venv.env, XDG_CONFIG_HOME=str(self.base / "config"),
                    XDG_CACHE_HOME=str(self.base / "cache"), PYTHONUNBUFFERED="1")

    def sr3(self, *args: str) -> subprocess.CompletedProcess:
        self.write()
        return subprocess.run([self.venv.bin / "sr3", *args], cwd=self.workdir, env=self.env,
                              capture_output=True, text=True, timeout=120)

    def start(self, target: str) -> Sr3Process:
        self.write()
        return VenvSr3Process(self.venv, self.workdir, target, self.logs / (target.replace("/", "_") + ".log"), self.env)


class VenvSr3Process(Sr3Process):
    def __init__(self, venv: Venv, workdir: Path, target: str, log: Path, env: dict[str, str]) -> None:
        self.target = target
        self.log_path = log
        self._log = open(log, "ab")
        self.popen = subprocess.Popen([venv.bin / "sr3", "foreground", target], cwd=workdir, env=env,
                                      stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def running(venv: Venv) -> Iterator[list[Sr3Process]]:
    processes: list[Sr3Process] = []
    yield processes
    for process in processes:
        process.stop()


def test_the_examples_of_the_wheel_poll_download_and_decode_mail(venv, tmp_path, rabbitmq, mail_account, running):
    for i in range(3):
        mail_account.deliver(sample_message(i))
    workdir = tmp_path / "examples"
    workdir.mkdir()
    home = VenvSr3Home(make_home(tmp_path, rabbitmq, mail_account), venv, workdir)
    assert subprocess.run([venv.bin / "mailingest", "examples", "."], cwd=workdir, env=home.env,
                          capture_output=True, timeout=60).returncode == 0
    for relative in ("poll/mail.conf", "subscribe/decodeemail.conf"):
        added = home.sr3("add", relative)
        assert added.returncode == 0, added.stdout + added.stderr
        home._cache_for(*relative.removesuffix(".conf").split("/"))
    notices = NoticeCollector(rabbitmq.url, "xs_mail")
    parts = NoticeCollector(rabbitmq.url, "xs_mail_parts")
    try:
        declared = home.sr3("declare", "subscribe/decodeemail")
        assert declared.returncode == 0, declared.stdout + declared.stderr
        subscriber = home.start("subscribe/decodeemail")
        running.append(subscriber)
        poll = home.start("poll/mail")
        running.append(poll)
        try:
            announced = notices.wait_for(3, timeout=60)
            mail_dir = tmp_path / "mail"
            wait_until(lambda: len(eml_files(mail_dir)) == 3, timeout=60, what="three .eml files")
            parts.wait_for(3, timeout=60,
                           predicate=lambda: sum(n["relPath"].endswith(".eml") for n in parts.notices) == 3)
        except AssertionError as exc:  # say why: a plugin that did not load, a missing module...
            raise AssertionError(f"{exc}\n--- poll log:\n{poll.log_text()[-2500:]}\n"
                                 f"--- subscriber log:\n{subscriber.log_text()[-2500:]}") from exc
        assert {n["relPath"].rsplit("/", 1)[0].split("/", 2)[-1] for n in announced} == {"INBOX"}, \
            "relPath: <host>[+port]/<user>/INBOX/<UIDVALIDITY>.<UID>.eml"
    finally:
        notices.close()
        parts.close()
    logs = poll.log_text() + subscriber.log_text()
    assert mail_account.password not in logs
    assert "Traceback" not in logs, logs[-3000:]
