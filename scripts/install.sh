#!/usr/bin/env bash
# Install everything mailingest, its tests, demo and benchmarks need, on Debian (run as root).
# Idempotent: a second run only checks.  Creates the virtualenv .venv in the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_packages=(dovecot-imapd dovecot-pop3d rabbitmq-server fetchmail ripmime dnsmasq-base ca-certificates openssl iproute2)
# netifaces (sr3's vip option, a mailingest dependency) has no wheel for Python >= 3.10: pip compiles it.
debian_packages+=(gcc python3-dev)
missing=()
for pkg in "${debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv python3-pip)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install.sh: missing Debian packages: ${missing[*]}; run this script as root" >&2
        exit 1
    fi
    echo "install.sh: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The suite runs its own private servers: keep the packages' system services from starting.
    policy_rc=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy_rc" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy_rc"; chmod +x "$policy_rc"; own_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$own_policy" = 1 ] && rm -f "$policy_rc"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import mailingest, sarracenia, pika, imapclient, trustme, pytest, build, netifaces, xdist, hypothesis, mypy' >/dev/null 2>&1 || [ ! -x .venv/bin/ruff ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
fi
echo "install.sh: ready (.venv, Dovecot, RabbitMQ, fetchmail, ripmime)"
