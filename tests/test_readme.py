"""The README's Python example runs as written (on the embedded model), on files the test writes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf

from poolingvq.examples import write_example_midi
from poolingvq.predict import EMBEDDED_MODEL_DIR
from poolingvq.transcription_poolingvq import transcription_available

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_usage_example_runs(tmp_path, monkeypatch):
    """As written: `pipeline("music-emotion")` without a model, i.e. on the embedded model."""
    for name, quadrant in (("song.mid", "Q1"), ("a.mid", "Q2"), ("b.mid", "Q3")):
        write_example_midi(tmp_path / name, quadrant, seconds=4)
    t = np.arange(3 * 22050) / 22050
    sf.write(tmp_path / "song.mp3", 0.3 * np.sin(2 * np.pi * 440 * t), 22050)
    monkeypatch.chdir(tmp_path)

    blocks = python_blocks(README.read_text())
    usage = next(block for block in blocks if 'pipeline("music-emotion"' in block)
    namespace: dict = {}
    exec(compile(usage, "README.md", "exec"), namespace)
    classify = namespace["classify"]
    assert Path(classify.model.name_or_path) == EMBEDDED_MODEL_DIR
    scores = classify({"audio": "song.mp3", "midi": "song.mid"})
    assert abs(sum(s["score"] for s in scores) - 1) < 1e-5
    heard = classify("song.mp3", return_details=True)["heard"]  # basic-pitch is installed by scripts/test.sh
    assert heard.startswith(
        "audio, with MIDI transcribed" if transcription_available() else "audio only (no MIDI)"
    )
    assert classify("song.mp3", return_details=True, transcribe=False)["heard"] == "audio only (no MIDI)"
