"""`poolingvq predict`: one piece -> the four quadrants with their scores and meanings."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from .configuration_poolingvq import QUADRANT_MEANINGS

#: Where the package keeps its embedded, trained model (issue 7); absent until one is shipped.
EMBEDDED_MODEL_DIR = Path(__file__).with_name("embedded") / "poolingvq-emopia"


def embedded_model_dir() -> Path | None:
    """The folder of the model shipped inside the package, or None when this version ships none."""
    return EMBEDDED_MODEL_DIR if (EMBEDDED_MODEL_DIR / "config.json").exists() else None


def describe_model(folder: Path) -> str:
    """The folder, and for the embedded model what it is and how well it did (read from its `metrics.json`)."""
    if folder.resolve() != EMBEDDED_MODEL_DIR.resolve():
        return str(folder)
    test = json.loads((folder / "metrics.json").read_text())["test"]
    return (
        f"{folder} (the embedded model: log-mel + a small MIDI-BERT trained here, no MERT; EMOPIA test accuracy "
        f"{test['accuracy']:.2f}, macro-F1 {test['macro_f1']:.2f}; see its README.md)"
    )


def load_pipeline(
    model: str | Path | None = None, revision: str | None = None, **kwargs: Any
) -> tuple[Any, str]:
    """A `"music-emotion"` pipeline on `model` (a folder, or a Hub repo id at `revision`), else on the embedded
    model, else on an UNTRAINED tiny model.

    The pipeline runs this package's own classes (not the copies of the code in the model folder), so its errors
    are `poolingvq.PoolingVQInputError` (also for a model that cannot be found). Returns the pipeline and a
    description of the model it runs (which says when the scores mean nothing).
    """
    from transformers import pipeline

    from .hub import is_local, resolve_model_dir
    from .pipeline_music_emotion import MusicEmotionPipeline

    folder = resolve_model_dir(model, revision, flag="--model") if model is not None else embedded_model_dir()
    if folder is not None:
        classify = pipeline(
            "music-emotion",
            model=str(folder),
            pipeline_class=MusicEmotionPipeline,
            trust_remote_code=False,
            **kwargs,
        )
        description = describe_model(folder)
        if model is not None and not is_local(model):  # a Hub repo: its id, then the cached snapshot it ran
            description = f"{model} ({description})"
        return classify, description

    from .configuration_poolingvq import PoolingVQConfig
    from .modeling_poolingvq import PoolingVQForMusicEmotion
    from .processing_poolingvq import PoolingVQProcessor

    config = PoolingVQConfig.from_preset("tiny")
    untrained = PoolingVQForMusicEmotion(config).eval()
    processor = PoolingVQProcessor.for_model(config, midi_mode="rescaled")
    description = (
        "UNTRAINED tiny model (random weights: no trained model is embedded yet; the scores mean nothing)"
    )
    classify = pipeline(
        "music-emotion", model=untrained, processor=processor, pipeline_class=MusicEmotionPipeline
    )
    return classify, description


def format_scores(scores: list[dict[str, Any]], meanings: dict[str, str]) -> str:
    lines = [f"{'quadrant':<9}{'score':>7}  meaning"]
    lines += [f"{s['label']:<9}{s['score']:>7.3f}  {meanings.get(s['label'], '')}" for s in scores]
    return "\n".join(lines)


def predict_command(args: argparse.Namespace) -> int:
    audio, midi = args.audio, args.midi
    if args.example:
        from .examples import write_example_midi

        midi = str(
            write_example_midi(Path(tempfile.mkdtemp(prefix="poolingvq-")) / "example.mid", args.example)
        )
    if audio is None and midi is None:
        print("poolingvq predict: give --audio and/or --midi (or --example Q1..Q4)", file=sys.stderr)
        return 2
    classify, description = load_pipeline(args.model, getattr(args, "revision", None))
    inputs = {key: value for key, value in (("audio", audio), ("midi", midi)) if value is not None}
    scores = classify(inputs)
    meanings = dict(QUADRANT_MEANINGS, **(getattr(classify.model.config, "label_meanings", None) or {}))
    if args.json:
        print(json.dumps({"model": description, "inputs": inputs, "scores": scores}, indent=2))
    else:
        print(f"model: {description}")
        print(
            f"input: {', '.join(f'{k} {v}' for k, v in inputs.items())}"
            + (" (audio synthesized)" * (audio is None))
        )
        print(format_scores(scores, meanings))
    return 0
