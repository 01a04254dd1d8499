"""How much do the saved two-modality runs of an experiment rest on audio, and how much on MIDI?

    python experiments/modality_reliance.py --experiment runs/embedded/emopia-ablation --cache-dir runs/embedded/features

For every run folder `<variant>/seed_<n>` that holds a saved audio+MIDI model, this measures
`poolingvq.training.modality_reliance` on the test split, with the batches the run's own final evaluation used: the
mean total-variation distance between a clip's predicted quadrant distribution and the one it gets when one
modality's input is another clip's. Runs trained since `modality_reliance` exists carry the same figure in their
`metrics.json`; this script measures it for runs trained before.

Writes `modality_reliance.json` under `--output-dir` (default: the experiment folder) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from poolingvq.experiments import slug
from poolingvq.features import CachedFeatureDataset, FeatureCache, collate_cached_features, extract_features
from poolingvq.modeling_poolingvq import PoolingVQForMusicEmotion
from poolingvq.processing_poolingvq import PoolingVQProcessor
from poolingvq.training import SplitFeatures, TrainingArguments, load_split_clips, modality_reliance, subset


def test_loader(model: PoolingVQForMusicEmotion, args: TrainingArguments, cache: FeatureCache) -> DataLoader:
    """The run's test batches, built as `training.train` builds them (same clips, order and batch size)."""
    clips = subset(load_split_clips(args)["test"], args.max_eval_samples, args.data_seed)
    processor = PoolingVQProcessor.for_model(model.config, midi_mode=args.midi_mode, soundfont=args.soundfont)
    result = extract_features(
        model,
        clips,
        cache,
        feature_extractor=processor.feature_extractor,
        tokenizer=processor.midi_tokenizer,
        max_midi_rows=processor.midi_max_rows,
        synthesis_kwargs={"soundfont": args.soundfont} if args.soundfont else None,
    )
    if result.computed:
        raise RuntimeError(f"{result.computed} test clips were not in the cache: is --cache-dir the run's?")
    clip_of = dict(zip(result.keys, clips, strict=True))
    keys = result.cached_keys
    features = SplitFeatures()
    features.add(
        "test", keys, [clip_of[key]["label"] for key in keys], [clip_of[key]["midi_path"] for key in keys]
    )
    if model.config.reads_midi_statistics:  # as training gives them: read from each clip's MIDI file
        features.read_statistics()
    statistics = None if features.midi_statistics is None else features.midi_statistics["test"]
    dataset = CachedFeatureDataset(cache, keys, features.labels["test"], midi_statistics=statistics)
    return DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate_cached_features)


def measure(experiment: Path, cache: FeatureCache) -> dict[str, Any]:
    accelerator = Accelerator(cpu=True)
    # run folders are named by slug; the suite's results.json has the variants' own names
    suite = experiment / "results.json"
    names = (
        {slug(run["variant"]): run["variant"] for run in json.loads(suite.read_text())["runs"]}
        if suite.exists()
        else {}
    )
    runs = []
    for folder in sorted(experiment.glob("*/seed_*")):
        metrics_path, weights = folder / "metrics.json", folder / "model.safetensors"
        if not (metrics_path.exists() and weights.exists()):
            continue
        model = PoolingVQForMusicEmotion.from_pretrained(str(folder)).eval()
        if model.config.modalities != "audio+midi":
            continue
        metrics = json.loads(metrics_path.read_text())
        args = TrainingArguments(**metrics["arguments"])
        with torch.no_grad():
            reliance = modality_reliance(model, test_loader(model, args, cache), accelerator)
        runs.append(
            {"variant": names.get(folder.parent.name, folder.parent.name), "seed": args.seed, **reliance}
        )
        print(f"{folder}: audio {reliance['audio']:.4f}, MIDI {reliance['midi']:.4f}", file=sys.stderr)
    summary = {}
    for variant in dict.fromkeys(run["variant"] for run in runs):
        mine = [run for run in runs if run["variant"] == variant]
        summary[variant] = {
            "runs": len(mine),
            **{f"{m}_mean": statistics.fmean(run[m] for run in mine) for m in ("audio", "midi")},
        }
    return {"experiment": experiment.name, "split": "test", "runs": runs, "summary": summary}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| variant | runs | reliance on audio | reliance on MIDI |", "| --- | --- | --- | --- |"]
    for variant, entry in result["summary"].items():
        lines.append(
            f"| {variant} | {entry['runs']} | {entry['audio_mean']:.3f} | {entry['midi_mean']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", required=True, help="a `poolingvq experiment --save-models` folder")
    parser.add_argument("--cache-dir", required=True, help="the feature cache its runs used")
    parser.add_argument(
        "--output-dir", default=None, help="where modality_reliance.json goes (default: --experiment)"
    )
    namespace = parser.parse_args(argv)
    experiment = Path(namespace.experiment)
    result = measure(experiment, FeatureCache(namespace.cache_dir))
    output = Path(namespace.output_dir or experiment)
    output.mkdir(parents=True, exist_ok=True)
    (output / "modality_reliance.json").write_text(json.dumps(result, indent=2))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
