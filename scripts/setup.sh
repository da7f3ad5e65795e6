#!/usr/bin/env bash
# Set up dcbench on a fresh machine: FashionMNIST (Debian package) if missing, a venv, the package.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${DCBENCH_DATA:-}" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "FashionMNIST not found: install Debian's dataset-fashion-mnist or set DCBENCH_DATA" >&2
  fi
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q -c constraints.txt -e ".[ray,test]"
