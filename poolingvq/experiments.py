"""The paper's experiments: its variants trained over several seeds on shared cached features.

    poolingvq experiment --dataset emopia --data-dir ../shared/data/emopia --suite ablation --seeds 3

Suites:
- `table1`: the full method (the paper's Table 1 row for this data set);
- `ablation`: all; without PoolingVQ (no quantization, no pooling); audio only; MIDI only; only average pooling;
  only max pooling (the paper's Fig. 3);
- `codebook-sweep`: the full method for codebook sizes P over a grid (the paper's Fig. 4).

Every variant shares the frozen encoders, so the feature cache is filled once (by the first run) and each variant
only trains its quantizer, fusion and head. Results go to `--output-dir`: one folder per variant and seed with its
`metrics.json`, `results.json` with every run, `results.md` with mean +- std of accuracy and macro-F1 on test, and
a PNG plot.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from .arguments import CODEBOOK_SIZES, dataclass_from_namespace
from .training import TrainingArguments, train

logger = logging.getLogger(__name__)

#: variant name -> TrainingArguments overrides
ABLATIONS: dict[str, dict[str, Any]] = {
    "all": {},
    "without PoolingVQ": {"pooling": "none"},
    # reads no notes: neither transcriptions of its training audio (`--transcribed-training-audio`), hidden
    # statistics (`--statistics-dropout`) nor a MIDI encoder to fine-tune (`--finetune-midi-encoder`) concern it
    # (without fine-tuning its arguments compare equal to the frozen recipe's audio-only run, which is read back)
    "audio only": {
        "modalities": "audio",
        "transcribed_training_audio": None,
        "statistics_dropout": None,
        "finetune_midi_encoder": False,
    },
    "MIDI only": {"modalities": "midi"},
    "only average pooling": {"pooling": "avg"},
    "only max pooling": {"pooling": "max"},
}


def suite_variants(suite: str, codebook_sizes: tuple[int, ...] = CODEBOOK_SIZES) -> dict[str, dict[str, Any]]:
    if suite == "table1":
        return {"all": {}}
    if suite == "ablation":
        return dict(ABLATIONS)
    if suite == "codebook-sweep":
        return {f"P={size}": {"codebook_size": size} for size in codebook_sizes}
    raise ValueError(f"unknown suite {suite!r}: table1, ablation or codebook-sweep")


def run_suite(
    base: TrainingArguments,
    suite: str,
    seeds: int,
    codebook_sizes: tuple[int, ...] = CODEBOOK_SIZES,
    save_models: bool = False,
    variants: tuple[str, ...] | None = None,
) -> dict:
    """Train every variant of `suite` for `seeds` seeds (base.seed, base.seed + 1, ...); write tables and a plot.

    A run whose folder already holds the `metrics.json` of the same arguments is read back, not trained again, so
    an interrupted suite goes on where it stopped, and a suite split over machines or processes with `variants`
    (a subset of the suite's names) is gathered into one table by a last run without it. `save_models` also writes
    each run's model folder.
    """
    output = Path(base.output_dir)
    runs: list[dict[str, Any]] = []
    chosen = suite_variants(suite, codebook_sizes)
    if variants:
        unknown = sorted(set(variants) - set(chosen))
        if unknown:
            raise ValueError(f"--variants: {unknown} not in the {suite} suite, which has {list(chosen)}")
        chosen = {name: overrides for name, overrides in chosen.items() if name in variants}
    for variant, overrides in chosen.items():
        for offset in range(seeds):
            seed = base.seed + offset
            folder = output / slug(variant) / f"seed_{seed}"
            arguments = dataclasses.replace(
                base, output_dir=str(folder), seed=seed, save_model=save_models, **overrides
            )
            metrics = finished_run(arguments) or train(arguments)
            runs.append(
                {
                    "variant": variant,
                    "seed": seed,
                    "test_accuracy": metrics["test"]["accuracy"],
                    "test_macro_f1": metrics["test"]["macro_f1"],
                    "val_macro_f1": metrics["validation"]["macro_f1"],
                    "best_epoch": metrics["best_epoch"],
                    **reliance_of(metrics),
                    **overrides,
                }
            )
    summary = summarise(runs)
    result = {
        "suite": suite,
        "dataset": base.dataset,
        "config": base.config,
        "seeds": seeds,
        "runs": runs,
        "summary": summary,
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(result, indent=2))
    (output / "results.md").write_text(markdown_table(result))
    plot(result, output / f"{suite}.png")
    return result


def finished_run(arguments: TrainingArguments) -> dict[str, Any] | None:
    """The metrics of a run already done with exactly these arguments (and its model, if one is asked for)."""
    folder = Path(arguments.output_dir)
    path = folder / "metrics.json"
    if not path.exists():
        return None
    metrics = json.loads(path.read_text())
    wanted = json.loads(json.dumps(dataclasses.asdict(arguments)))
    if comparable(metrics.get("arguments") or {}) != comparable(wanted):
        return None
    if arguments.save_model and not (folder / "model.safetensors").exists():
        return None
    logger.info("%s: done before with the same arguments, read back", folder)
    return metrics


#: TrainingArguments fields that may name a file or folder: compared as the place they resolve to, so that
#: `../shared/data/emopia` and `/work/shared/data/emopia` are the same argument (from the current directory)
PATH_FIELDS = (
    "data_dir",
    "audio_dir",
    "dataset_path",
    "model_init",
    "output_dir",
    "midi_encoder",
    "cache_dir",
    "soundfont",
)


#: TrainingArguments fields that change how a run is shown, allowed, carried out or published, never its result
#: (`resume`: a run continued from its last checkpoint restores the optimizer, scheduler and random states with it)
PRESENTATION_FIELDS = ("progress", "allow_random_encoders", "push_to_hub", "hub_private_repo", "resume")
#: TrainingArguments fields that change nothing unless the run fine-tunes its MIDI encoder (added after runs were
#: recorded without them: a run that does not fine-tune is compared without them, so those records still match)
MIDI_FINETUNING_FIELDS = ("finetune_midi_encoder", "lr_midi_encoder", "weight_decay_midi_encoder")


def comparable(arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments as compared: paths resolved, presentation fields left out, and unset (None) fields left out,
    so that a run recorded before an optional flag existed still matches a run that does not give it (and so are
    the MIDI-encoder fine-tuning fields of a run that does not fine-tune)."""
    unused = () if arguments.get("finetune_midi_encoder") else MIDI_FINETUNING_FIELDS
    resolved = {
        name: value
        for name, value in arguments.items()
        if value is not None and name not in PRESENTATION_FIELDS and name not in unused
    }
    for name in PATH_FIELDS:
        value = resolved.get(name)
        if isinstance(value, str) and os.path.exists(value):
            resolved[name] = os.path.realpath(value)
    return resolved


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def reliance_of(metrics: dict[str, Any]) -> dict[str, float]:
    """`audio_reliance` and `midi_reliance` of a two-modality run's test predictions (none for the others)."""
    reliance = metrics["test"].get("modality_reliance") or {}
    return {f"{modality}_reliance": value for modality, value in reliance.items()}


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation of the test metrics (and of validation macro-F1, on which choices are
    made) per variant (std 0 for a single seed)."""
    summary: dict[str, dict[str, float]] = {}
    for variant in dict.fromkeys(run["variant"] for run in runs):
        mine = [run for run in runs if run["variant"] == variant]
        entry: dict[str, float] = {"runs": len(mine)}
        for metric in ("test_accuracy", "test_macro_f1", "val_macro_f1"):
            if not all(metric in run for run in mine):
                continue
            values = [run[metric] for run in mine]
            entry[f"{metric}_mean"] = statistics.fmean(values)
            entry[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        for metric in ("audio_reliance", "midi_reliance"):
            if all(metric in run for run in mine):
                entry[f"{metric}_mean"] = statistics.fmean(run[metric] for run in mine)
        summary[variant] = entry
    return summary


def markdown_table(result: dict[str, Any]) -> str:
    lines = [
        f"# {result['suite']} on {result['dataset']} ({result['config']} split), {result['seeds']} seed(s)",
        "",
        "| variant | test accuracy | test macro-F1 | reliance on audio / MIDI |",
        "| --- | --- | --- | --- |",
    ]
    for variant, entry in result["summary"].items():
        reliance = (
            f"{entry['audio_reliance_mean']:.3f} / {entry['midi_reliance_mean']:.3f}"
            if "audio_reliance_mean" in entry
            else "–"
        )
        lines.append(
            f"| {variant} | {entry['test_accuracy_mean']:.3f} ± {entry['test_accuracy_std']:.3f} "
            f"| {entry['test_macro_f1_mean']:.3f} ± {entry['test_macro_f1_std']:.3f} | {reliance} |"
        )
    lines += [
        "",
        "Reliance: the mean change (total variation) of a test clip's predicted distribution when that modality's "
        "input is another clip's; 0 means the model ignores it.",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Bars with error bars per variant (Fig. 3), or macro-F1 against P (Fig. 4) for the codebook sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    names = list(summary)
    figure, axis = plt.subplots(figsize=(max(5, 1.3 * len(names)), 3.6), dpi=120)
    if result["suite"] == "codebook-sweep":
        sizes = [int(name.split("=")[1]) for name in names]
        for metric, label in (("test_accuracy", "accuracy"), ("test_macro_f1", "macro-F1")):
            axis.errorbar(
                sizes,
                [summary[n][f"{metric}_mean"] for n in names],
                yerr=[summary[n][f"{metric}_std"] for n in names],
                marker="o",
                capsize=3,
                label=label,
            )
        axis.set_xscale("log", base=2)
        axis.set_xlabel("codebook size P")
    else:
        positions = range(len(names))
        width = 0.38
        for shift, (metric, label) in zip(
            (-width / 2, width / 2),
            (("test_accuracy", "accuracy"), ("test_macro_f1", "macro-F1")),
            strict=True,
        ):
            axis.bar(
                [p + shift for p in positions],
                [summary[n][f"{metric}_mean"] for n in names],
                width,
                yerr=[summary[n][f"{metric}_std"] for n in names],
                capsize=3,
                label=label,
            )
        axis.set_xticks(list(positions), names, rotation=20, ha="right")
    axis.set_ylim(0, 1)
    axis.set_ylabel("test score")
    axis.set_title(f"{result['suite']} on {result['dataset']} ({result['seeds']} seed(s))")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def experiment_command(namespace: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    base = dataclass_from_namespace(TrainingArguments, namespace)
    if base.push_to_hub is not None:  # every run of the suite would overwrite the same repo
        print(
            "poolingvq experiment: --push-to-hub uploads one model; push a run's folder with "
            "`poolingvq push-to-hub DIR REPO_ID` (with --save-models)",
            file=sys.stderr,
        )
        return 2
    result = run_suite(
        base,
        namespace.suite,
        namespace.seeds,
        namespace.codebook_sizes,
        save_models=namespace.save_models,
        variants=namespace.variants,
    )
    print(markdown_table(result))
    print(f"written to {base.output_dir}: results.json, results.md, {namespace.suite}.png")
    return 0
