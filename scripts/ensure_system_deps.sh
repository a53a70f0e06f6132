#!/usr/bin/env bash
# Make sure the system tools that building this package's ROS 2 messages needs
# are present: a C/C++ compiler, make, CMake and the headers of the Python that
# creates the venv (the generated message bindings are a C extension).
# Installs what is missing with apt-get (Debian/Ubuntu, as root); does nothing,
# quickly, when everything is there. Usage: ensure_system_deps.sh [python]
set -euo pipefail

python="${1:-python3}"
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
if ! "$python" -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
  # Debian's python3-dev matches /usr/bin/python3; other interpreters (pyenv,
  # conda) ship their own headers.
  missing+=(python3-dev)
fi
# python3 -m venv needs ensurepip (Debian: python3-venv).
if [ ! -x .venv/bin/python ] && ! "$python" -c 'import ensurepip' 2>/dev/null; then
  missing+=(python3-venv)
fi

[ ${#missing[@]} -eq 0 ] && exit 0

echo "ensure_system_deps: missing: ${missing[*]}" >&2
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "ensure_system_deps: please install them (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
