#!/usr/bin/env bash
# The test suite, on a fresh machine: installs what it needs, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# torch first, pinned: 2.13.0 is a local CPU wheel here; an unpinned torch would pull a multi-GB CUDA build.
python -m pip install --quiet torch==2.13.0
python -m pip install --quiet -e ".[dev]"
# a recording alone is read by its transcribed notes where basic-pitch is installed: its tests need it
bash scripts/install_transcription.sh
python -m pytest -q -n auto --dist loadfile "$@"
