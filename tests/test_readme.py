"""The README's Python example runs as written, on a saved tiny model and files the test writes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from poolingvq import PoolingVQConfig, PoolingVQForMusicEmotion, PoolingVQProcessor
from poolingvq.examples import write_example_midi

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_usage_example_runs(tmp_path, monkeypatch):
    torch.manual_seed(0)
    config = PoolingVQConfig.from_preset("tiny")
    PoolingVQForMusicEmotion(config).save_pretrained(tmp_path / "model")
    PoolingVQProcessor.for_model(config).save_pretrained(tmp_path / "model")
    for name, quadrant in (("song.mid", "Q1"), ("a.mid", "Q2"), ("b.mid", "Q3")):
        write_example_midi(tmp_path / name, quadrant, seconds=4)
    t = np.arange(3 * 22050) / 22050
    sf.write(tmp_path / "song.mp3", 0.3 * np.sin(2 * np.pi * 440 * t), 22050)
    monkeypatch.chdir(tmp_path)

    blocks = python_blocks(README.read_text())
    usage = next(block for block in blocks if 'pipeline("music-emotion"' in block)
    namespace: dict = {}
    exec(compile(usage.replace("path/to/model", str(tmp_path / "model")), "README.md", "exec"), namespace)
    classify = namespace["classify"]
    scores = classify({"audio": "song.mp3", "midi": "song.mid"})
    assert abs(sum(s["score"] for s in scores) - 1) < 1e-5
