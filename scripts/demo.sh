#!/usr/bin/env bash
# Fresh Debian machine (as root): install everything, then run the main job end to end against
# private local servers: deliver sample mail → sr3 poll → RabbitMQ → sr3 subscriber → files.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python scripts/demo.py "$@"
