#!/usr/bin/env bash
# The main job, on a fresh machine: install, then classify an example piece the project writes itself.
set -euo pipefail
cd "$(dirname "$0")/.."
# torch first, pinned: 2.13.0 is a local CPU wheel here; an unpinned torch would pull a multi-GB CUDA build.
python -m pip install --quiet torch==2.13.0
python -m pip install --quiet -e .
poolingvq predict --example "${1:-Q1}"
