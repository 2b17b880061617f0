#!/usr/bin/env bash
# The whole test suite: installs what is missing (as root on Debian), then runs pytest.
# Integration tests start their own Dovecot and RabbitMQ on free loopback ports and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest "$@"
