"""Tests of the command line's start-up (no heavy import to build any parser; the flags read from the dataclasses'
source are the dataclasses' flags), of the lazy package import's registration with transformers, and of `predict`
on many files and folders."""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from poolingvq import PoolingVQConfig, PoolingVQForMusicEmotion, PoolingVQProcessor, arguments
from poolingvq.cli import build_parser, main
from poolingvq.examples import write_example_midi
from poolingvq.predict import Piece, collect_pieces

HEAVY_MODULES = ("torch", "transformers", "datasets", "accelerate", "evaluate", "numpy")


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_importing_the_cli_and_building_every_parser_imports_nothing_heavy():
    """What `poolingvq --help` and each subcommand's `--help` pay for: no torch, transformers, datasets..."""
    code = (
        "import sys, json\n"
        "import poolingvq.cli\n"
        f"after_import = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY_MODULES!r})\n"
        "poolingvq.cli.build_parser()\n"
        f"after_parsers = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY_MODULES!r})\n"
        "print(json.dumps([after_import, after_parsers]))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    after_import, after_parsers = json.loads(result.stdout)
    assert after_import == [] and after_parsers == []


@pytest.mark.parametrize("module", ["poolingvq.cli", "poolingvq.train"])
def test_python_dash_m_runs_the_entry_points(module):
    """`python -m poolingvq.cli` and `accelerate launch -m poolingvq.train` go through runpy and the import hook."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.startswith("usage: "), result.stderr


def test_every_subcommand_has_its_help():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"predict", "train", "experiment", "pretrain-midi", "prepare-dataset"} <= set(commands)
    for name, subparser in commands.items():
        assert subparser.format_help().startswith(f"usage: poolingvq {name}"), name


def flag_signature(parser: argparse.ArgumentParser) -> list[tuple]:
    return [
        (a.dest, tuple(a.option_strings), a.default, a.type, a.choices, a.help, type(a).__name__)
        for a in parser._actions
    ]


@pytest.mark.parametrize("command", ["train", "pretrain-midi"])
def test_flags_read_from_source_are_the_dataclass_flags(command):
    """The CLI reads the dataclasses from their files' source (no torch); the result equals the imported class's."""
    if command == "train":
        from poolingvq.training import TrainingArguments as cls

        from_source = arguments.add_training_arguments
    else:
        from poolingvq.pretraining import PretrainingArguments as cls

        from_source = arguments.add_pretrain_midi_arguments
    imported, read = argparse.ArgumentParser(), argparse.ArgumentParser()
    arguments.add_dataclass_arguments(imported, cls)
    from_source(read)
    assert flag_signature(read) == flag_signature(imported)
    assert len(flag_signature(read)) > 20


def test_source_fields_refuse_a_default_that_is_not_a_literal(tmp_path):
    (tmp_path / "settings.py").write_text(
        "from dataclasses import dataclass, field\n"
        "@dataclass\n"
        "class Settings:\n"
        "    seed: int = 4\n"
        "    name: str = field(default='x', metadata={'help': 'a name'})\n"
        "    sizes: list = field(default_factory=list)\n"
    )
    with pytest.raises(TypeError, match="Settings.sizes: its default is not a literal"):
        arguments.source_field_specs(tmp_path / "settings.py", "Settings")


def test_light_constants_agree_with_the_code_that_uses_them():
    from poolingvq.data.prepare import DATASET_BUILDERS

    assert arguments.DATASETS == tuple(sorted(DATASET_BUILDERS))


@pytest.mark.parametrize(
    "first_import",
    [
        "from poolingvq.configuration_poolingvq import PoolingVQConfig",  # transformers first imported inside it
        "from poolingvq.pipeline_music_emotion import MusicEmotionPipeline",
        "import poolingvq; import transformers",
        "import transformers; import poolingvq",
    ],
)
def test_the_package_registers_with_transformers_however_it_is_imported(first_import):
    code = (
        f"{first_import}\n"
        "from transformers import AutoConfig\n"
        "from transformers.pipelines import PIPELINE_REGISTRY\n"
        "assert type(AutoConfig.for_model('poolingvq')).__name__ == 'PoolingVQConfig'\n"
        "assert 'music-emotion' in PIPELINE_REGISTRY.get_supported_tasks()\n"
        "print('registered')\n"
    )
    result = run_python(code)
    assert result.returncode == 0 and "registered" in result.stdout, result.stderr


def test_the_lazy_package_still_offers_its_names_and_submodules():
    code = (
        "import sys, poolingvq\n"
        "assert callable(poolingvq.predict.embedded_model_dir) and 'torch' not in sys.modules\n"
        "from poolingvq import *\n"
        "assert PoolingVQConfig.model_type == 'poolingvq' and QUADRANT_LABELS[0] == 'Q1'\n"
        "assert 'PoolingVQForMusicEmotion' in dir(poolingvq)\n"
        "print('ok')\n"
    )
    result = run_python(code)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


# --- predict: many files, folders -------------------------------------------------------------------------------


def test_pieces_pair_audio_and_midi_of_the_same_stem(tmp_path):
    for name in ("a.mid", "a.wav", "b.MID", "c.flac", "notes.txt", "sub/a.wav", "sub/d.midi"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    pieces = collect_pieces([tmp_path, tmp_path / "a.mid", tmp_path / "missing.wav"])
    root = str(tmp_path)
    assert pieces == [
        Piece(audio=f"{root}/a.wav", midi=f"{root}/a.mid"),  # named twice: once
        Piece(audio=None, midi=f"{root}/b.MID"),
        Piece(audio=f"{root}/c.flac", midi=None),
        Piece(audio=f"{root}/sub/a.wav", midi=None),  # another folder: another piece
        Piece(audio=None, midi=f"{root}/sub/d.midi"),
        Piece(audio=f"{root}/missing.wav", midi=None),  # kept: its error will name it
    ]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    config = PoolingVQConfig.from_preset("tiny")
    model = PoolingVQForMusicEmotion(config).eval()
    with torch.no_grad():
        model.quantizer.init_codebook(torch.randn(500, config.audio_config.hidden_size), seed=0)
    model.save_pretrained(folder)
    PoolingVQProcessor.for_model(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pieces_dir(tmp_path_factory) -> Path:
    """Three pieces: one.mid + one.wav (a pair), two.mid, three.mid."""
    folder = tmp_path_factory.mktemp("pieces")
    for name, quadrant in (("one", "Q1"), ("two", "Q2"), ("three", "Q3")):
        write_example_midi(folder / f"{name}.mid", quadrant, seconds=3)
    t = np.arange(2 * 24000) / 24000
    sf.write(folder / "one.wav", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 24000)
    return folder


def test_predict_a_folder_gives_one_row_per_piece(model_dir, pieces_dir, capsys):
    assert (
        main(["predict", str(pieces_dir), "--model", str(model_dir), "--top-k", "2", "--device", "cpu"]) == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"model: {model_dir}"
    rows = lines[2:]
    assert [row.split()[0] for row in rows] == [
        f"{pieces_dir}/one.wav",
        f"{pieces_dir}/three.mid",
        f"{pieces_dir}/two.mid",
    ]
    assert f"{pieces_dir}/one.wav + {pieces_dir}/one.mid" in rows[0]
    assert all(len([word for word in row.split() if word in ("Q1", "Q2", "Q3", "Q4")]) == 2 for row in rows)


def test_predict_json_and_csv_match_the_pipeline(model_dir, pieces_dir, capsys):
    from poolingvq.predict import load_pipeline

    classify, _ = load_pipeline(model_dir)
    expected = classify({"audio": str(pieces_dir / "one.wav"), "midi": str(pieces_dir / "one.mid")})
    files = [str(pieces_dir / "one.mid"), str(pieces_dir / "one.wav"), str(pieces_dir / "two.mid")]
    assert main(["predict", *files, "--model", str(model_dir), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [set(piece) for piece in printed["pieces"]] == [
        {"audio", "midi", "scores", "heard"},
        {"midi", "scores", "heard"},
    ]
    got = printed["pieces"][0]["scores"]
    assert [s["label"] for s in got] == [s["label"] for s in expected]
    assert [s["score"] for s in got] == pytest.approx([s["score"] for s in expected], abs=1e-6)
    assert [piece["heard"] for piece in printed["pieces"]] == [
        "audio and MIDI",
        "MIDI, with audio synthesized from it",
    ]

    assert main(["predict", *files, "--model", str(model_dir), "--csv", "--top-k", "1"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["audio", "midi", "label_1", "score_1", "heard", "error"]
    assert rows[0]["label_1"] == expected[0]["label"] and rows[1]["audio"] == "" and rows[1]["error"] == ""
    assert rows[1]["heard"] == "MIDI, with audio synthesized from it"
    assert float(rows[0]["score_1"]) == pytest.approx(expected[0]["score"], abs=1e-6)


def test_predict_names_each_failure_and_answers_the_others(model_dir, pieces_dir, tmp_path, capsys):
    (tmp_path / "empty.mid").write_bytes(b"")
    (tmp_path / "noise.wav").write_bytes(b"not audio at all" * 10)
    files = [str(pieces_dir / "two.mid"), str(tmp_path / "empty.mid"), str(tmp_path / "noise.wav")]
    assert main(["predict", *files, str(tmp_path / "missing.mid"), "--model", str(model_dir), "--csv"]) == 2
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert [bool(row["error"]) for row in rows] == [False, True, True, True]
    assert rows[0]["label_1"] in {"Q1", "Q2", "Q3", "Q4"}
    errors = [line for line in captured.err.splitlines() if line.startswith("poolingvq predict: ")]
    assert errors[-1] == "poolingvq predict: 3 of 4 pieces failed"
    assert len(errors) == 4
    for name, line in zip(("empty.mid", "noise.wav", "missing.mid"), errors, strict=False):
        assert name in line, line


def test_predict_refuses_bad_options_in_one_line(model_dir, pieces_dir, tmp_path, capsys):
    assert main(["predict", str(pieces_dir / "two.mid"), "--model", str(model_dir), "--top-k", "5"]) == 2
    assert "--top-k must be in 1..4" in capsys.readouterr().err
    assert main(["predict", str(pieces_dir / "two.mid"), "--device", "toaster"]) == 2
    assert "--device: 'toaster' is not a torch device" in capsys.readouterr().err
    assert main(["predict", str(tmp_path)]) == 2  # an empty folder
    assert "no audio or MIDI files" in capsys.readouterr().err


def test_predict_with_a_broken_model_folder_is_refused_in_one_line(model_dir, pieces_dir, tmp_path, capsys):
    # Issue 11, failure 6: each of these printed transformers' traceback.
    no_weights, bad_json, foreign = tmp_path / "no_weights", tmp_path / "bad_json", tmp_path / "foreign"
    for folder in (no_weights, bad_json, foreign):
        folder.mkdir()
    (no_weights / "config.json").write_text((model_dir / "config.json").read_text())
    (bad_json / "config.json").write_text("{")
    (foreign / "config.json").write_text("{}")
    midi = str(pieces_dir / "two.mid")
    for folder, reason in (
        (no_weights, "model.safetensors"),
        (bad_json, "not a valid JSON"),
        (foreign, "model_type"),
        (tmp_path / "empty_folder", ""),
    ):
        folder.mkdir(exist_ok=True)
        assert main(["predict", "--midi", midi, "--model", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"poolingvq predict: --model: {folder}") and reason in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
