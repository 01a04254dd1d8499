"""Publishing (`poolingvq push-to-hub`, `poolingvq.publish`) and the model card `poolingvq train` writes: the exact
files and card that would go up (huggingface_hub's network calls are replaced, nothing leaves the machine), the
card's metadata, its usage block run as written, and its training command parsed back by `train`'s own parser."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from poolingvq import PoolingVQConfig, PoolingVQForMusicEmotion, PoolingVQProcessor
from poolingvq.cli import build_parser, main
from poolingvq.examples import write_example_midi
from poolingvq.predict import embedded_model_dir
from poolingvq.publish import model_files, relative_imports, stage_model_folder
from poolingvq.training import (
    DATASET_CARDS,
    UNRECORDED_FIELDS,
    TrainingArguments,
    training_flags,
    write_model_card,
)


def fake_metrics() -> dict:
    split = {"accuracy": 0.5, "macro_f1": 0.45, "count": 10}
    return {"validation": split, "test": split, "best_epoch": 2, "train_clips": 40}


def card_front_matter(card: str) -> dict:
    return yaml.safe_load(card.split("---")[1])


def code_block(card: str, heading: str, language: str) -> str:
    """The first fenced `language` block after `heading` in a card."""
    section = card[card.index(heading) :]
    return re.search(rf"```{language}\n(.*?)```", section, re.DOTALL).group(1)


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory) -> Path:
    """A tiny model folder as `poolingvq train` leaves it: the model, its processor, metrics and card, and beside
    them the training's leftovers (checkpoints, logs, best weights, a temporary file)."""
    folder = tmp_path_factory.mktemp("run") / "poolingvq-emopia"
    torch.manual_seed(0)
    config = PoolingVQConfig.from_preset("tiny")
    PoolingVQForMusicEmotion(config).save_pretrained(folder)
    PoolingVQProcessor.for_model(config, midi_mode="rescaled").save_pretrained(folder)
    (folder / "metrics.json").write_text(json.dumps(fake_metrics()))
    args = TrainingArguments(model_init="tiny", allow_random_encoders=True, output_dir=str(folder))
    write_model_card(folder, args, fake_metrics(), config)
    (folder / "checkpoints" / "epoch_0001").mkdir(parents=True)
    (folder / "checkpoints" / "epoch_0001" / "model.safetensors").write_bytes(b"state")
    (folder / "logs" / "poolingvq").mkdir(parents=True)
    (folder / "logs" / "poolingvq" / "events.out.tfevents.1").write_bytes(b"events")
    (folder / "best_trained_weights.safetensors").write_bytes(b"best")
    (folder / ".best_trained_weights.safetensors.123.tmp").write_bytes(b"partial")
    return folder


def expected_model_files(folder: Path) -> list[str]:
    saved = {"config.json", "model.safetensors", "processor_config.json", "README.md", "metrics.json"}
    return sorted(saved | {path.name for path in folder.glob("*.py")})


# ----------------------------------------------------------------------------------------------- the files


def test_the_model_folder_is_the_model_without_training_leftovers(trained_folder):
    files = model_files(trained_folder)
    assert files == expected_model_files(trained_folder)
    assert {"modeling_poolingvq.py", "pipeline_music_emotion.py", "processing_poolingvq.py"} <= set(files)
    assert not {"checkpoints", "logs", "best_trained_weights.safetensors"} & set(files)
    assert not any(name.startswith(".") or name.endswith(".tmp") for name in files)


def test_relative_imports_are_followed_as_transformers_follows_them():
    source = (
        "from .a import x\nfrom .b.c import (y,\n    z)  # comment\nfrom . import d, e as f\n"
        "def g():\n    from .h import i\nfrom a import j\n"
    )
    assert relative_imports(source) == {"a", "b", "d", "e", "h"}


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """huggingface_hub's HfApi with its network calls replaced: each call is recorded, and `upload_folder` copies
    the folder it is given (the staging folder is deleted once the call returns)."""
    from huggingface_hub import HfApi

    calls: list[tuple[str, dict]] = []
    uploaded = tmp_path / "uploaded"

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, **kwargs):
        calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        calls.append(("upload_folder", kwargs))
        import shutil

        shutil.copytree(kwargs["folder_path"], uploaded)
        return type(
            "CommitInfo", (), {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/0"}
        )()

    def forbidden(self, *args, **kwargs):
        raise AssertionError("a Hub call the test did not expect")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_branch", create_branch)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    for name in ("upload_file", "create_commit", "delete_file", "delete_folder"):
        monkeypatch.setattr(HfApi, name, forbidden)
    return calls, uploaded


def uploaded_files(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def test_push_to_hub_uploads_exactly_the_model_folder_and_its_card(trained_folder, fake_hub, capsys):
    calls, uploaded = fake_hub
    code = main(
        ["push-to-hub", str(trained_folder), "me/poolingvq-emopia", "--private", "--revision", "v1",
         "--commit-message", "first model"]
    )  # fmt: skip
    assert code == 0
    assert [name for name, _ in calls] == ["create_repo", "create_branch", "upload_folder"]
    assert calls[0][1]["repo_id"] == "me/poolingvq-emopia" and calls[0][1]["private"] is True
    assert calls[0][1]["exist_ok"] is True
    assert calls[1][1]["branch"] == "v1"
    upload = calls[2][1]
    assert upload["revision"] == "v1" and upload["commit_message"] == "first model"
    assert upload["repo_id"] == "me/poolingvq-emopia"
    # one commit of the staged folder, exactly the model: nothing filtered out on the way by patterns
    assert upload.get("allow_patterns") is None and upload.get("ignore_patterns") is None
    assert uploaded_files(uploaded) == expected_model_files(trained_folder)
    for name in expected_model_files(trained_folder):
        if name != "README.md":
            assert (uploaded / name).read_bytes() == (trained_folder / name).read_bytes(), name
    # the card that goes up is the training's card, its usage pointed at the repo
    local, sent = (trained_folder / "README.md").read_text(), (uploaded / "README.md").read_text()
    assert 'pipeline("music-emotion", model="me/poolingvq-emopia", trust_remote_code=True)' in sent
    assert sent == local.replace('model="poolingvq-emopia"', 'model="me/poolingvq-emopia"')
    assert card_front_matter(sent)["license"] == "cc-by-nc-sa-4.0"
    out = capsys.readouterr().out
    assert f"uploaded {len(expected_model_files(trained_folder))} files" in out
    assert "checkpoints" not in out and "best_trained_weights" not in out


def test_dry_run_and_bad_input_touch_no_network(trained_folder, fake_hub, tmp_path, capsys):
    calls, _ = fake_hub
    assert main(["push-to-hub", str(trained_folder), "me/x", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would upload" in out and all(f"  {name}" in out for name in expected_model_files(trained_folder))
    assert main(["push-to-hub", str(trained_folder), "not a repo id!"]) == 2
    assert "not a Hub repo id" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["push-to-hub", str(tmp_path / "empty"), "me/x"]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert calls == []


@pytest.mark.skipif(embedded_model_dir() is None, reason="this version embeds no model")
def test_the_embedded_model_is_staged_with_its_remote_code_and_loads_with_transformers_alone(tmp_path):
    """The embedded folder holds no code files and no auto_map (the package's classes load it); staged for the
    Hub it gets both, and then `pipeline("music-emotion", ..., trust_remote_code=True)` runs it in a process
    that never imports poolingvq."""
    staged = stage_model_folder(embedded_model_dir(), tmp_path / "staged", "me/poolingvq-emopia")
    assert {"modeling_poolingvq.py", "pipeline_music_emotion.py", "configuration_poolingvq.py"} <= set(
        staged.added
    )
    assert set(staged.files) == set(model_files(tmp_path / "staged"))
    config = json.loads((tmp_path / "staged" / "config.json").read_text())
    assert config["auto_map"]["AutoModelForAudioClassification"].startswith("modeling_poolingvq.")
    midi = write_example_midi(tmp_path / "calm.mid", "Q4", seconds=6)
    script = (
        "import sys\nfrom transformers import pipeline\n"
        f"classify = pipeline('music-emotion', model={str(tmp_path / 'staged')!r}, trust_remote_code=True)\n"
        f"scores = classify({str(midi)!r})\n"
        "assert abs(sum(s['score'] for s in scores) - 1) < 1e-5, scores\n"
        "assert not any(m.split('.')[0] == 'poolingvq' for m in sys.modules), 'poolingvq was imported'\n"
        "print(scores[0]['label'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] in {"Q1", "Q2", "Q3", "Q4"}


# ----------------------------------------------------------------------------------------------- the card


def test_the_cards_usage_block_runs_as_written(trained_folder, tmp_path):
    """The card's Python block, run as it stands from the folder's parent with the song files it names, in a
    process that never imports poolingvq (transformers and the folder's remote code alone)."""
    card = (trained_folder / "README.md").read_text()
    block = code_block(card, "## Use", "python")
    assert 'model="poolingvq-emopia", trust_remote_code=True' in block
    here = trained_folder.parent
    write_example_midi(here / "song.mid", "Q1", seconds=6)
    rate = 24000
    t = np.arange(4 * rate) / rate
    sf.write(here / "song.wav", 0.3 * np.sin(2 * np.pi * 440 * t), rate)
    script = (
        block
        + "\nimport sys\nresult = classify({'audio': 'song.wav', 'midi': 'song.mid'})\n"
        + "assert abs(sum(s['score'] for s in result) - 1) < 1e-5, result\n"
        + "assert not any(m.split('.')[0] == 'poolingvq' for m in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=here, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]


def card_for(tmp_path: Path, config: PoolingVQConfig, **overrides) -> tuple[str, TrainingArguments]:
    args = TrainingArguments(**{"model_init": "offline", **overrides})
    write_model_card(tmp_path, args, fake_metrics(), config)
    return (tmp_path / "README.md").read_text(), args


def test_card_metadata_holds_licence_base_model_and_no_fake_dataset_ids(tmp_path):
    config = PoolingVQConfig.from_preset("tiny")
    config.encoder_weights = {
        "audio": {"kind": "pretrained", "weights": "MERT", "via": "import-weights",
                  "source": "m-a-p/MERT-v1-95M", "revision": "a" * 40},
        "midi": {"kind": "pretrained", "weights": "MIDI-BERT", "via": "import-weights",
                 "source": str(tmp_path / "MidiBert.ckpt")},
    }  # fmt: skip
    card, _ = card_for(tmp_path, config)
    meta = card_front_matter(card)
    assert meta["license"] == "cc-by-nc-sa-4.0"  # EMOPIA's
    assert meta["base_model"] == "m-a-p/MERT-v1-95M"  # the Hub repo; the local checkpoint is no base model
    assert meta["base_model_relation"] == "finetune"
    assert "datasets" not in meta  # EMOPIA has no Hub id: the text names and links it
    assert "[EMOPIA](https://annahung31.github.io/EMOPIA/)" in card
    # transformers' audio-classification pipeline cannot give the model its MIDI: no tag promises it
    assert meta["pipeline_tag"] == "other"
    assert meta["library_name"] == "transformers" and "custom_code" in meta["tags"]
    assert str(tmp_path) not in code_block(card, "## Use", "python")

    # a model from random encoders has no base model; VGMIDI's licence is what its dataset script states
    card, _ = card_for(tmp_path, PoolingVQConfig.from_preset("tiny"), dataset="vgmidi")
    meta = card_front_matter(card)
    assert "base_model" not in meta and meta["license"] == "unknown"


def test_card_licences_are_the_dataset_builders():
    from poolingvq.data import EmopiaBuilder, VgmidiBuilder

    assert DATASET_CARDS["emopia"][2] == EmopiaBuilder.LICENSE
    assert DATASET_CARDS["vgmidi"][2] == VgmidiBuilder.LICENSE
    assert DATASET_CARDS["emopia"][1] == EmopiaBuilder.HOMEPAGE
    assert DATASET_CARDS["vgmidi"][1] == VgmidiBuilder.HOMEPAGE


def test_the_cards_training_command_parses_back_to_the_same_arguments(tmp_path):
    config = PoolingVQConfig.from_preset("tiny")
    card, args = card_for(
        tmp_path,
        config,
        model_init="tiny",
        allow_random_encoders=True,
        data_dir=str(tmp_path / "EMOPIA 1.0"),  # a space in a path
        extra_soundfonts="a b.sf2,c.sf2",
        save_model=False,
        progress=False,
        resume=True,
        push_to_hub="me/poolingvq",
        hub_private_repo=True,
        lr_head=0.001,
        max_train_samples=40,
        modality_dropout=0.25,
    )
    command = shlex.split(code_block(card, "## Training command", "bash"))
    assert command[:2] == ["poolingvq", "train"]
    namespace = build_parser().parse_args(command[1:])
    assert namespace.handler == "poolingvq.training:train_command"
    from poolingvq.arguments import dataclass_from_namespace

    parsed = dataclass_from_namespace(TrainingArguments, namespace)
    defaults = TrainingArguments()
    expected = dataclasses.replace(args, **{name: getattr(defaults, name) for name in UNRECORDED_FIELDS})
    assert parsed == expected
    assert "--push-to-hub" not in command and "--no-save-model" in command
    assert training_flags(expected) == training_flags(parsed)
