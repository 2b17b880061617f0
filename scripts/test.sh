#!/usr/bin/env bash
# The whole test suite: installs what is missing (as root on Debian), runs ruff and mypy, then pytest.
# Integration tests start their own Dovecot and RabbitMQ on free loopback ports and stop them.
# Tests run on parallel pytest-xdist workers (setup.cfg: -n auto), each with its own servers;
# pass -n 0 to run in one process (debugging), see docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# Lint and types first (configured in pyproject.toml): a failure here stops before the long suite.
.venv/bin/ruff check plugins tests bench scripts
.venv/bin/mypy
# Byte code: where PYTHONDONTWRITEBYTECODE is set (some CI images set it), each of the suite's
# ~500 Python processes (sr3 flows, decoders, measuring children) would compile mailingest from
# source again (~0.1 s of CPU each).  Compile once; __pycache__ is git-ignored.
unset PYTHONDONTWRITEBYTECODE
.venv/bin/python -m compileall -q plugins tests bench > /dev/null
exec .venv/bin/python -m pytest "$@"
