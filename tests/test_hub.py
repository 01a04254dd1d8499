"""Models named by Hugging Face Hub repo id (`poolingvq/hub.py`), with no network.

The tests lay out a Hub cache the way huggingface_hub writes one (`models--org--name/blobs/<hash>`,
`snapshots/<commit>/<file>` symlinks into the blobs, `refs/<branch or tag>` holding the commit) and run in offline
mode (`HF_HUB_OFFLINE=1`): huggingface_hub itself must find the snapshot there. In this process its settings are
patched (it reads the environment once, at import); the command-line tests run `poolingvq` in a fresh process
with the environment set, as a user would.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from test_weights import assert_encoders_hold_the_official_weights, write_tiny_official_files

from poolingvq.errors_poolingvq import PoolingVQInputError
from poolingvq.hub import resolve_model_dir, snapshot_commit

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


def cache_repo(
    cache: Path, repo_id: str, files: Path, commit: str, refs: tuple[str, ...] = ("main",)
) -> Path:
    """Put the files under `files` into the Hub cache `cache` as snapshot `commit` of model repo `repo_id`, with
    `refs` (branches or tags) pointing at it; returns the snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for path in sorted(files.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hub cache, offline: set in the environment (for child processes) and in huggingface_hub's
    settings, which it read from the environment when it was imported."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


#: What the `poolingvq` console script runs (without depending on where pip put the script)
POOLINGVQ = [sys.executable, "-c", "import sys; from poolingvq.cli import main; sys.exit(main())"]


def run_cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`poolingvq ARGV` in a fresh Python process with this process's environment."""
    return subprocess.run([*POOLINGVQ, *argv], capture_output=True, text=True, timeout=300, cwd=cwd)


# ------------------------------------------------------------------------------------------------ the resolver


def test_a_local_path_is_used_as_it_is_and_has_no_revision(tmp_path: Path, hub_cache: Path) -> None:
    (tmp_path / "model").mkdir()
    assert resolve_model_dir(tmp_path / "model") == tmp_path / "model"
    assert resolve_model_dir(str(tmp_path / "model")) == tmp_path / "model"
    with pytest.raises(PoolingVQInputError, match="a local path has no revision"):
        resolve_model_dir(tmp_path / "model", revision="main")


def test_a_repo_id_resolves_to_its_cached_snapshot_at_the_pinned_revision(
    tmp_path: Path, hub_cache: Path
) -> None:
    for commit, text in ((COMMIT_A, "old"), (COMMIT_B, "new")):
        (tmp_path / commit).mkdir()
        (tmp_path / commit / "config.json").write_text(json.dumps({"version": text}))
    old = cache_repo(hub_cache, "org/model", tmp_path / COMMIT_A, COMMIT_A, refs=("v1",))
    new = cache_repo(hub_cache, "org/model", tmp_path / COMMIT_B, COMMIT_B, refs=("main",))

    assert resolve_model_dir("org/model") == new  # main
    assert json.loads((new / "config.json").read_text()) == {"version": "new"}  # read through the symlink
    assert resolve_model_dir("org/model", revision="v1") == old  # a tag
    assert resolve_model_dir("org/model", revision=COMMIT_A) == old  # a commit
    assert snapshot_commit(old) == COMMIT_A and snapshot_commit(tmp_path) is None
    with pytest.raises(
        PoolingVQInputError, match=r"org/model: .*revision 'v2' is not in the Hub cache .*OFFLINE"
    ):
        resolve_model_dir("org/model", revision="v2", flag="--model")


def test_a_name_that_is_neither_a_path_nor_a_repo_id_is_refused(hub_cache: Path) -> None:
    with pytest.raises(
        PoolingVQInputError, match="no such file or folder, and not a Hugging Face Hub repo id"
    ):
        resolve_model_dir("no such/folder/here")
    with pytest.raises(PoolingVQInputError, match=r"--mert org/absent: .*this repo is not in the Hub cache"):
        resolve_model_dir("org/absent", flag="--mert")


# ---------------------------------------------------------------------------------------------- end to end


def test_import_weights_takes_hub_repo_ids_for_both_encoders(tmp_path: Path, hub_cache: Path, capsys) -> None:
    """MERT by its Hub id, and MIDI-BERT as a converted `MidiBertModel` folder shared on the Hub."""
    from poolingvq.cli import main
    from poolingvq.midibert_poolingvq import MidiBertModel
    from poolingvq.modeling_poolingvq import PoolingVQForMusicEmotion
    from poolingvq.weights import load_midibert_state_dict, midibert_config_from_state_dict

    mert_dir, mert, ckpt, midibert = write_tiny_official_files(tmp_path / "official")
    cache_repo(hub_cache, "m-a-p/MERT-v1-95M", mert_dir, COMMIT_A)
    state = load_midibert_state_dict(ckpt)
    converted = MidiBertModel(midibert_config_from_state_dict(state))
    converted.load_state_dict(state)
    converted.save_pretrained(tmp_path / "converted")
    cache_repo(hub_cache, "someone/midibert-piano", tmp_path / "converted", COMMIT_B)

    out = tmp_path / "poolingvq-paper"
    argv = ["import-weights", "--mert", "m-a-p/MERT-v1-95M", "--midibert", "someone/midibert-piano"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"from m-a-p/MERT-v1-95M (revision {COMMIT_A})" in printed
    assert f"from someone/midibert-piano (revision {COMMIT_B})" in printed

    model = PoolingVQForMusicEmotion.from_pretrained(out)
    assert_encoders_hold_the_official_weights(model, mert, midibert)
    assert model.config.encoder_weights == {
        "audio": {
            "kind": "pretrained",
            "weights": "MERT",
            "via": "import-weights",
            "source": "m-a-p/MERT-v1-95M",
            "revision": COMMIT_A,
        },
        "midi": {
            "kind": "pretrained",
            "weights": "MIDI-BERT",
            "via": "import-weights",
            "source": "someone/midibert-piano",
            "revision": COMMIT_B,
        },
    }


def test_predict_runs_a_cached_hub_model_in_a_fresh_process(tmp_path: Path, hub_cache: Path) -> None:
    """`poolingvq predict --model org/name`, the Hub cache and offline mode from the environment: the scores of
    the local folder the repo was made from."""
    from poolingvq import PoolingVQConfig, PoolingVQForMusicEmotion, PoolingVQProcessor
    from poolingvq.examples import write_example_midi
    from poolingvq.predict import load_pipeline

    torch.manual_seed(0)
    config = PoolingVQConfig.from_preset("tiny")
    PoolingVQForMusicEmotion(config).eval().save_pretrained(tmp_path / "model")
    PoolingVQProcessor.for_model(config).save_pretrained(tmp_path / "model")
    cache_repo(hub_cache, "org/poolingvq-tiny", tmp_path / "model", COMMIT_A, refs=("main", "v1"))
    midi = write_example_midi(tmp_path / "piece.mid", "Q2", seconds=4)

    result = run_cli(
        "predict", "--model", "org/poolingvq-tiny", "--revision", "v1", "--midi", str(midi), "--json"
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["model"].startswith("org/poolingvq-tiny (") and COMMIT_A in printed["model"]
    classify, _ = load_pipeline(tmp_path / "model")
    expected = classify({"midi": str(midi)})
    assert [s["label"] for s in printed["scores"]] == [s["label"] for s in expected]
    assert [s["score"] for s in printed["scores"]] == pytest.approx([s["score"] for s in expected], abs=1e-5)


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "--model", "nobody/no-such-model", "--example", "Q1"],
        ["import-weights", "--mert", "nobody/no-such-model", "--midibert", "x.ckpt", "--out", "out"],
        ["train", "--model-init", "nobody/no-such-model", "--output-dir", "out"],
        ["demo", "--model", "nobody/no-such-model", "--port", "1"],  # refused before any server starts
    ],
    ids=["predict", "import-weights", "train", "demo"],
)
def test_an_unknown_model_id_is_one_line_without_traceback(
    argv: list[str], tmp_path: Path, hub_cache: Path
) -> None:
    result = run_cli(*argv, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(f"poolingvq {argv[0]}: ")
    assert "nobody/no-such-model: no such file or folder, and this repo is not in the Hub cache" in lines[0]
    assert "HF_HUB_OFFLINE=1" in lines[0]
    assert not (tmp_path / "out").exists()


def test_readme_names_the_official_sources_and_an_import_command_that_parses() -> None:
    import re
    import shlex

    from poolingvq.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## The pre-trained encoders: where their weights come from")[1].split("\n## ")[0]
    assert "https://huggingface.co/m-a-p/MERT-v1-95M" in section
    assert "https://github.com/wazenmai/MIDI-BERT" in section
    command = re.search(r"^poolingvq import-weights .*$", section, flags=re.MULTILINE)[0]
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert (args.command, args.mert) == ("import-weights", "m-a-p/MERT-v1-95M")
    assert args.midibert and args.out
