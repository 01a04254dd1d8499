"""`poolingvq experiment`: variants over seeds on one shared feature cache -> table, JSON and plot."""

from __future__ import annotations

import dataclasses
import json

import pytest
from shared_data import DATA_DIR, needs_emopia

from poolingvq.cli import main
from poolingvq.experiments import ABLATIONS, markdown_table, suite_variants, summarise


def test_suites_name_the_papers_variants():
    assert list(suite_variants("ablation")) == [
        "all",
        "without PoolingVQ",
        "audio only",
        "MIDI only",
        "only average pooling",
        "only max pooling",
    ]
    assert ABLATIONS["without PoolingVQ"] == {"pooling": "none"}
    # a recipe's levers for the MIDI side are dropped where the variant reads no MIDI, so every variant runs
    from poolingvq.training import TrainingArguments, check_run

    recipe = TrainingArguments(
        model_init="tiny",
        allow_random_encoders=True,
        config_overrides="midi_statistics=true",
        statistics_dropout=0.5,
        finetune_midi_encoder=True,
    )
    for overrides in ABLATIONS.values():
        check_run(dataclasses.replace(recipe, **overrides))
    assert suite_variants("codebook-sweep", (16, 64)) == {
        "P=16": {"codebook_size": 16},
        "P=64": {"codebook_size": 64},
    }
    with pytest.raises(ValueError, match="unknown suite"):
        suite_variants("table9")


def test_summary_is_mean_and_sample_std():
    runs = [
        {
            "variant": "all",
            "test_accuracy": 0.5,
            "test_macro_f1": 0.4,
            "audio_reliance": 0.1,
            "midi_reliance": 0.3,
        },
        {
            "variant": "all",
            "test_accuracy": 0.7,
            "test_macro_f1": 0.6,
            "audio_reliance": 0.2,
            "midi_reliance": 0.4,
        },
        {"variant": "MIDI only", "test_accuracy": 0.3, "test_macro_f1": 0.2},
    ]
    summary = summarise(runs)
    assert summary["all"]["test_accuracy_mean"] == pytest.approx(0.6)
    assert summary["all"]["test_accuracy_std"] == pytest.approx(0.1414213, rel=1e-5)
    assert summary["MIDI only"]["test_macro_f1_std"] == 0.0
    table = markdown_table(
        {"suite": "ablation", "dataset": "emopia", "config": "paper", "seeds": 2, "summary": summary}
    )
    assert summary["all"]["audio_reliance_mean"] == pytest.approx(0.15)
    assert "audio_reliance_mean" not in summary["MIDI only"]
    assert "| all | 0.600 ± 0.141 | 0.500 ± 0.141 | 0.150 / 0.350 |" in table
    assert "| MIDI only | 0.300 ± 0.000 | 0.200 ± 0.000 | – |" in table


@needs_emopia
def test_codebook_sweep_runs_on_shared_features(tmp_path):
    output = tmp_path / "sweep"
    argv = [
        "experiment", "--suite", "codebook-sweep", "--codebook-sizes", "4,8", "--seeds", "2",
        "--dataset", "emopia", "--data-dir", str(DATA_DIR / "emopia"), "--model-init", "tiny",
        "--allow-random-encoders",
        "--output-dir", str(output), "--cache-dir", str(tmp_path / "cache"), "--max-train-samples", "16",
        "--max-eval-samples", "8", "--epochs", "2", "--batch-size", "8", "--max-audio-seconds", "5",
        "--midi-mode", "rescaled",
    ]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((output / "results.json").read_text())
    assert [(run["variant"], run["seed"]) for run in result["runs"]] == [
        ("P=4", 42), ("P=4", 43), ("P=8", 42), ("P=8", 43)
    ]  # fmt: skip
    assert all(0 <= run["test_accuracy"] <= 1 for run in result["runs"])
    assert (output / "codebook-sweep.png").stat().st_size > 5000
    assert "| P=4 |" in (output / "results.md").read_text()
    # 16 + 8 + 8 clips were encoded once and shared by all four runs
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 32

    # Run again: every run is read back from its metrics.json (same arguments), none is trained again.
    stamps = {path: path.stat().st_mtime_ns for path in output.glob("*/seed_*/metrics.json")}
    assert len(stamps) == 4
    assert main(argv) == 0
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert json.loads((output / "results.json").read_text())["runs"] == result["runs"]


def test_a_finished_run_is_reused_only_with_the_same_arguments(tmp_path):
    from dataclasses import asdict, replace

    from poolingvq.experiments import finished_run
    from poolingvq.training import TrainingArguments

    arguments = TrainingArguments(output_dir=str(tmp_path), seed=7, save_model=False)
    assert finished_run(arguments) is None  # nothing there yet
    (tmp_path / "metrics.json").write_text(
        json.dumps({"test": {"accuracy": 0.5}, "arguments": asdict(arguments)})
    )
    assert finished_run(arguments)["test"]["accuracy"] == 0.5
    assert finished_run(replace(arguments, seed=8)) is None  # other arguments: train again
    # the same folder spelt another way is the same argument
    (tmp_path / "data").mkdir()
    arguments = replace(arguments, data_dir=str(tmp_path / "data"))
    (tmp_path / "metrics.json").write_text(
        json.dumps({"test": {"accuracy": 0.5}, "arguments": asdict(arguments)})
    )
    assert (
        finished_run(replace(arguments, data_dir=str(tmp_path / "data" / ".." / "data")))["test"]["accuracy"]
        == 0.5
    )
    assert finished_run(replace(arguments, data_dir=str(tmp_path))) is None
    assert finished_run(replace(arguments, save_model=True)) is None  # a model is asked for and absent
    # a run that was interrupted and finished with --resume trained the same recipe
    (tmp_path / "metrics.json").write_text(
        json.dumps({"test": {"accuracy": 0.5}, "arguments": asdict(replace(arguments, resume=True))})
    )
    assert finished_run(arguments)["test"]["accuracy"] == 0.5
    # a run recorded before --config-overrides existed is read back; one with other overrides is not
    recorded = {key: value for key, value in asdict(arguments).items() if key != "config_overrides"}
    (tmp_path / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.5}, "arguments": recorded}))
    assert finished_run(arguments)["test"]["accuracy"] == 0.5
    assert finished_run(replace(arguments, config_overrides="window_size=7")) is None
    # a run recorded before the MIDI-encoder fine-tuning flags existed is read back, unless this one fine-tunes
    later = ("finetune_midi_encoder", "lr_midi_encoder", "weight_decay_midi_encoder")
    recorded = {key: value for key, value in asdict(arguments).items() if key not in later}
    (tmp_path / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.5}, "arguments": recorded}))
    assert finished_run(replace(arguments, lr_midi_encoder=1e-4))["test"]["accuracy"] == 0.5  # unused: frozen
    assert finished_run(replace(arguments, finetune_midi_encoder=True)) is None
    tuned = replace(arguments, finetune_midi_encoder=True)
    (tmp_path / "metrics.json").write_text(
        json.dumps({"test": {"accuracy": 0.5}, "arguments": asdict(tuned)})
    )
    assert finished_run(tuned)["test"]["accuracy"] == 0.5
    assert finished_run(replace(tuned, lr_midi_encoder=1e-4)) is None


def test_variants_must_belong_to_the_suite(tmp_path):
    from poolingvq.experiments import run_suite
    from poolingvq.training import TrainingArguments

    with pytest.raises(ValueError, match=r"\['MIDI alone'\] not in the ablation suite"):
        run_suite(TrainingArguments(output_dir=str(tmp_path)), "ablation", 1, variants=("all", "MIDI alone"))
