#!/usr/bin/env bash
# Installs the Python peers the benchmarks compare against (onnxruntime, FAISS, hnswlib)
# into a virtual environment at bench/peers/.venv, and prints the interpreter to pass as --python.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --upgrade pip
"$here/.venv/bin/pip" install --quiet -r "$here/requirements.txt"
echo "$here/.venv/bin/python"
