"""The model shipped inside the package (issue 7): there, small, what `pipeline("music-emotion")`, `poolingvq predict`
and the Space run by default, answering as it did when it was shipped, and described by a card whose figures are
the shipped JSON files' (written again here from them)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import poolingvq
from poolingvq.cli import main
from poolingvq.examples import write_example_midi
from poolingvq.experiments import ABLATIONS
from poolingvq.predict import EMBEDDED_MODEL_DIR, embedded_model_dir, load_pipeline

REPO = Path(__file__).resolve().parents[1]
FOLDER = EMBEDDED_MODEL_DIR


def load_embed_script():
    spec = importlib.util.spec_from_file_location("embed_model", REPO / "experiments" / "embed_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_ships_a_small_trained_model_without_code():
    assert embedded_model_dir() == FOLDER, f"no embedded model in {FOLDER}"
    weights = FOLDER / "model.safetensors"
    assert weights.stat().st_size <= 25 * 2**20
    with safe_open(str(weights), "pt") as tensors:
        names = set(tensors.keys())
    assert any(name.startswith("quantizer.") for name in names) and any("classifier" in n for n in names)
    assert not list(FOLDER.glob("*.py"))  # the package's own classes load it
    metrics = json.loads((FOLDER / "metrics.json").read_text())
    assert metrics["arguments"]["model_init"] == "offline"  # no downloaded weights
    assert metrics["dataset"] == "emopia" and metrics["config"] == "paper"
    assert (
        metrics["arguments"]["pooling"] is None and metrics["arguments"]["modalities"] is None
    )  # the full method
    config = json.loads((FOLDER / "config.json").read_text())
    assert config["model_type"] == "poolingvq" and config["audio_config"]["model_type"] == "poolingvq_logmel"
    assert "auto_map" not in config


def test_pipeline_without_a_model_runs_the_embedded_one_as_shipped(tmp_path):
    from transformers import pipeline

    classify = pipeline("music-emotion")
    assert Path(classify.model.name_or_path) == FOLDER
    assert not classify.model.training and classify.model.quantizer.initialized.item()
    recorded = json.loads((FOLDER / "example_predictions.json").read_text())
    for quadrant, expected in recorded.items():
        midi = write_example_midi(tmp_path / f"{quadrant}.mid", quadrant)
        scores = classify({"midi": str(midi)})
        assert [s["label"] for s in scores] == [s["label"] for s in expected]
        assert torch.allclose(
            torch.tensor([s["score"] for s in scores]),
            torch.tensor([s["score"] for s in expected]),
            atol=1e-4,
        )
    # the package's loader gives the same pipeline, with a description naming the folder
    _, description = load_pipeline()
    test = json.loads((FOLDER / "metrics.json").read_text())["test"]
    assert description.startswith(str(FOLDER)) and "UNTRAINED" not in description
    assert f"EMOPIA test accuracy {test['accuracy']:.2f}, macro-F1 {test['macro_f1']:.2f}" in description


def test_predict_example_prints_the_embedded_models_scores(capsys):
    assert main(["predict", "--example", "Q3"]) == 0
    printed = capsys.readouterr().out
    assert f"model: {FOLDER}" in printed and "UNTRAINED" not in printed
    for quadrant, meaning in poolingvq.QUADRANT_MEANINGS.items():
        assert f"{quadrant} " in printed and meaning in printed


def test_processor_loads_with_the_auto_class():
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(FOLDER)
    assert type(processor).__name__ == "PoolingVQProcessor"
    assert (
        processor.midi_tokenizer.mode
        == json.loads((FOLDER / "metrics.json").read_text())["arguments"]["midi_mode"]
    )


def test_card_is_written_from_the_shipped_results():
    embed = load_embed_script()
    card = (FOLDER / "README.md").read_text()
    assert card == embed.model_card(FOLDER), "README.md differs from what the shipped JSON files give"
    metrics = json.loads((FOLDER / "metrics.json").read_text())
    ablation = json.loads((FOLDER / "ablation_results.json").read_text())
    assert f"| EMOPIA | test | {metrics['test']['count']} | {metrics['test']['accuracy']:.3f} |" in card
    assert list(ablation["summary"]) == list(ABLATIONS)  # all six variants of the paper's ablation
    assert all(entry["runs"] == 3 for entry in ablation["summary"].values())
    assert ablation["dataset"] == "emopia" and ablation["config"] == "paper"
    shipped = next(
        r for r in ablation["runs"] if r["variant"] == "all" and r["seed"] == metrics["arguments"]["seed"]
    )
    assert shipped["test_macro_f1"] == pytest.approx(
        metrics["test"]["macro_f1"]
    )  # the shipped run is that row
    assert (FOLDER / "ablation.png").stat().st_size > 5000
    assert "bash experiments/reproduce_embedded_model.sh" in card


def test_readme_reports_the_shipped_figures():
    readme = (REPO / "README.md").read_text()
    test = json.loads((FOLDER / "metrics.json").read_text())["test"]
    vgmidi = json.loads((FOLDER / "vgmidi_metrics.json").read_text())["test"]
    summary = json.loads((FOLDER / "ablation_results.json").read_text())["summary"]
    assert (
        f"| EMOPIA test ({test['count']} clips), the shipped model | {test['accuracy']:.3f} | {test['macro_f1']:.3f} |"
        in readme
    )
    assert (
        f"| VGMIDI test ({vgmidi['count']} pieces), same recipe | {vgmidi['accuracy']:.3f} | {vgmidi['macro_f1']:.3f} |"
        in readme
    )
    for variant, entry in summary.items():
        assert (
            f"| {variant} | {entry['test_accuracy_mean']:.3f} ± {entry['test_accuracy_std']:.3f} |" in readme
        )
