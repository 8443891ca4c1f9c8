#!/usr/bin/env bash
# The main job: `metalplane demo` on a virtual rack built on this machine (needs root for
# namespaces and Open vSwitch; uses sudo when not root). Arguments go to `metalplane demo`
# (e.g. scripts/demo.sh --nodes 6 --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    exec sudo --preserve-env=PATH "$PWD/.venv/bin/metalplane" demo "$@"
fi
exec "$PWD/.venv/bin/metalplane" demo "$@"
