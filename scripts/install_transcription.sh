#!/usr/bin/env bash
# What reading a recording alone by its notes needs: Spotify's basic-pitch (its ONNX weights come in its wheel) and
# what it runs on. basic-pitch's metadata asks for TensorFlow on Python >= 3.11, which it does not use when ONNX
# Runtime is installed, so it is installed without its dependencies; the `transcription` extra lists those it uses.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --no-deps "basic-pitch==0.4.0"
python -m pip install --quiet -e ".[transcription]"
python -c "from poolingvq.transcription_poolingvq import transcription_available as ok; assert ok(), 'basic-pitch missing'"
