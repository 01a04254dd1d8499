"""The `evaluate` metric modules that ship with the package (each folder is also a Hugging Face Space).

    import evaluate
    from poolingvq.metrics import MUSIC_EMOTION_METRIC_DIR
    metric = evaluate.load(str(MUSIC_EMOTION_METRIC_DIR))

Nothing is imported here: the metric's own file imports evaluate, which costs seconds.
"""

from __future__ import annotations

from pathlib import Path

#: The `music_emotion` metric's folder: `music_emotion.py`, its card (README.md, with the Space's YAML) and `app.py`.
MUSIC_EMOTION_METRIC_DIR = Path(__file__).resolve().parent / "music_emotion"

__all__ = ["MUSIC_EMOTION_METRIC_DIR"]
