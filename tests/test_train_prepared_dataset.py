"""`poolingvq train --dataset-path`: training on `prepare-dataset`'s output (a folder or a Hub dataset repo), with
its splits, its labels and its recordings (`Audio(decode=False)`), the MIDI of clips without one synthesized."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile
from shared_data import DATA_DIR, needs_emopia
from test_hub import COMMIT_A, cache_repo, hub_cache  # noqa: F401  (hub_cache: a fixture)
from test_prepare_dataset import CLIPS, parse, small_emopia

from poolingvq.cache_keys import file_sha256
from poolingvq.cli import build_parser
from poolingvq.data.prepare import prepare_dataset_command
from poolingvq.errors_poolingvq import PoolingVQInputError
from poolingvq.features import clip_key
from poolingvq.training import TrainingArguments, load_split_clips, train

QUADRANTS = ("Q1", "Q2", "Q3", "Q4")


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`load_dataset(folder)` converts Parquet into datasets' cache: the test's own, not the user's."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")


def tone(seconds: float, rate: int, pitch: float) -> np.ndarray:
    times = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * pitch * times)).astype("float32")


def prepare(data_dir: Path, out: Path, cache: Path, audio_dir: Path | None = None) -> Path:
    """`poolingvq prepare-dataset emopia` as the CLI runs it (no synthesis: training synthesizes)."""
    argv = [
        "emopia",
        "--data-dir",
        str(data_dir),
        "--cache-dir",
        str(cache),
        "--no-synthesize",
        "--out",
        str(out),
    ]
    if audio_dir is not None:
        argv += ["--audio-dir", str(audio_dir)]
    assert prepare_dataset_command(parse(*argv)) == 0
    return out


def arguments(**overrides) -> TrainingArguments:
    return TrainingArguments(**{"dataset": "emopia", "model_init": "tiny", **overrides})


def dataset_clips(dataset_dict: datasets.DatasetDict) -> dict[str, list[tuple[str, int]]]:
    return {split: list(zip(data["id"], data["label"], strict=True)) for split, data in dataset_dict.items()}


def used_clips(clips: dict[str, list[dict]]) -> dict[str, list[tuple[str, int]]]:
    return {split: [(clip["id"], clip["label"]) for clip in items] for split, items in clips.items()}


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, Path]:
    """A small prepared EMOPIA-like dataset (5 one-note MIDI clips) whose two clips have real recordings."""
    audio_dir = tmp_path / "recordings"
    audio_dir.mkdir()
    soundfile.write(audio_dir / "Q1_songa_0.wav", tone(1.5, 22050, 440), 22050)
    soundfile.write(audio_dir / "Q4_songd_0.flac", tone(1.0, 16000, 220), 16000)
    data_dir = small_emopia(tmp_path / "emopia")
    return prepare(data_dir, tmp_path / "prepared", tmp_path / "builder-cache", audio_dir), audio_dir


# ------------------------------------------------------------------------------------------------- the clips


def test_clips_are_the_datasets_with_its_recordings_and_the_raw_releases_cache_keys(
    tmp_path: Path, recorded: tuple[Path, Path]
) -> None:
    prepared, audio_dir = recorded
    files = tmp_path / "features"
    clips = load_split_clips(arguments(dataset_path=str(prepared), cache_dir=str(files)))
    assert used_clips(clips) == dataset_clips(datasets.load_from_disk(str(prepared / "dataset_dict")))
    assert [clip["id"] for clip in clips["train"]] == CLIPS["train"]

    by_id = {clip["id"]: clip for split in clips.values() for clip in split}
    # the recordings, written from the dataset's bytes into the cache's content-addressed folder
    for clip_id, name in (("Q1_songa_0", "Q1_songa_0.wav"), ("Q4_songd_0", "Q4_songd_0.flac")):
        path = Path(by_id[clip_id]["audio_path"])
        assert path.parent.parent == files / "dataset_files" and path.suffix == Path(name).suffix
        assert path.read_bytes() == (audio_dir / name).read_bytes()
    assert [clip_id for clip_id, clip in by_id.items() if clip["audio_path"] is None] == [
        "Q2_songb_0",
        "Q3_songc_0",
        "Q1_songe_0",
    ]  # synthesized by training, as for a raw release

    # the feature cache's key of each clip is the one the raw release's clip gets: one cache for both
    raw = load_split_clips(
        arguments(data_dir=str(tmp_path / "emopia"), audio_dir=str(audio_dir), cache_dir=str(files))
    )
    settings = {"audio": {"rate": 24000}, "midi": {"mode": "rescaled"}, "synthesis": {"soundfont": None}}
    for split, raw_clips in raw.items():
        for raw_clip, clip in zip(raw_clips, clips[split], strict=True):
            assert raw_clip["id"] == clip["id"] and raw_clip["midi_path"] != clip["midi_path"]
            assert clip_key(raw_clip, "encoders", settings) == clip_key(clip, "encoders", settings)
            assert file_sha256(clip["midi_path"]) == file_sha256(raw_clip["midi_path"])


def test_the_datasets_splits_and_labels_win_over_the_releases(tmp_path: Path) -> None:
    """A dataset whose labels and splits were changed after preparing: training takes them as they are."""
    prepared = prepare(small_emopia(tmp_path / "emopia"), tmp_path / "prepared", tmp_path / "cache")
    original = datasets.load_from_disk(str(prepared / "dataset_dict"))
    shifted = original["train"].map(
        lambda row: {"label": (row["label"] + 1) % 4}, features=original["train"].features
    )
    edited = datasets.DatasetDict(
        {
            "train": datasets.concatenate_datasets([shifted.select([0, 1]), original["test"]]),
            "validation": original["validation"],
            "test": shifted.select([2]),
        }
    )
    edited.save_to_disk(str(tmp_path / "edited"))
    clips = load_split_clips(arguments(dataset_path=str(tmp_path / "edited"), cache_dir=str(tmp_path / "f")))
    assert used_clips(clips) == {
        "train": [("Q1_songa_0", 1), ("Q2_songb_0", 2), ("Q1_songe_0", 0)],
        "validation": [("Q4_songd_0", 3)],
        "test": [("Q3_songc_0", 3)],
    }


def test_parquet_files_and_card_alone_load_as_the_dataset_dict(
    tmp_path: Path, recorded: tuple[Path, Path]
) -> None:
    """What `hf upload` puts on the Hub (the card and data/, not dataset_dict/) reads as `load_dataset(folder)`."""
    prepared, _ = recorded
    shutil.rmtree(prepared / "dataset_dict")
    clips = load_split_clips(arguments(dataset_path=str(prepared), cache_dir=str(tmp_path / "f")))
    assert used_clips(clips) == dataset_clips(datasets.load_dataset(str(prepared)))
    assert sum(clip["audio_path"] is not None for split in clips.values() for clip in split) == 2


def test_a_hub_dataset_repo_id_resolves_through_the_hub_cache(
    tmp_path: Path,
    recorded: tuple[Path, Path],
    hub_cache: Path,  # noqa: F811
) -> None:
    prepared, _ = recorded
    shutil.rmtree(prepared / "dataset_dict")  # as pushed: hf upload ... --exclude "dataset_dict/*"
    snapshot = cache_repo(hub_cache, "someone/emopia-prepared", prepared, COMMIT_A)
    # a dataset repo: huggingface_hub caches it as datasets--org--name
    dataset_repo = hub_cache / "datasets--someone--emopia-prepared"
    (hub_cache / "models--someone--emopia-prepared").rename(dataset_repo)
    clips = load_split_clips(arguments(dataset_path="someone/emopia-prepared", cache_dir=str(tmp_path / "f")))
    assert snapshot.name == COMMIT_A
    assert used_clips(clips) == dataset_clips(datasets.load_dataset(str(prepared)))
    with pytest.raises(PoolingVQInputError, match="someone/nothing-here: no such file or folder"):
        load_split_clips(arguments(dataset_path="someone/nothing-here", cache_dir=str(tmp_path / "f")))
    with pytest.raises(PoolingVQInputError, match="has no revision 'v9'|revision 'v9'"):
        load_split_clips(
            arguments(
                dataset_path="someone/emopia-prepared", dataset_revision="v9", cache_dir=str(tmp_path / "f")
            )
        )


def test_what_cannot_be_trained_on_is_one_line(tmp_path: Path, recorded: tuple[Path, Path]) -> None:
    prepared, _ = recorded
    cache = str(tmp_path / "f")
    with pytest.raises(
        PoolingVQInputError, match="holds the 'paper' split, not 'release': pass --config paper"
    ):
        load_split_clips(arguments(dataset_path=str(prepared), config="release", cache_dir=cache))
    with pytest.raises(PoolingVQInputError, match="holds emopia, not vgmidi: pass --dataset emopia"):
        load_split_clips(arguments(dataset_path=str(prepared), dataset="vgmidi", cache_dir=cache))
    shutil.rmtree(prepared / "dataset_dict")
    with pytest.raises(PoolingVQInputError, match=r"has no config 'release' \(its configs: paper\)"):
        load_split_clips(arguments(dataset_path=str(prepared), config="release", cache_dir=cache))
    no_test = datasets.load_dataset(str(prepared))
    del no_test["test"]
    no_test.save_to_disk(str(tmp_path / "no-test"))
    with pytest.raises(PoolingVQInputError, match="has no test split"):
        load_split_clips(arguments(dataset_path=str(tmp_path / "no-test"), cache_dir=cache))
    with pytest.raises(PoolingVQInputError, match="--audio-dir: cannot go with --dataset-path"):
        train(arguments(dataset_path=str(prepared), audio_dir=str(tmp_path), allow_random_encoders=True))


def test_train_parses_dataset_path_and_revision() -> None:
    namespace = build_parser().parse_args(
        ["train", "--dataset-path", "me/emopia-prepared", "--dataset-revision", "v1", "--model-init", "tiny"]
    )
    assert namespace.dataset_path == "me/emopia-prepared" and namespace.dataset_revision == "v1"


# ------------------------------------------------------------------------------------------------ end to end


def small_real_emopia(folder: Path, per_split: dict[str, int]) -> tuple[Path, dict[str, list[str]]]:
    """A release of real EMOPIA clips, all from the official training split but split here in three: training on
    the official split instead of the dataset's would show in the counts."""
    source = DATA_DIR / "emopia"
    with open(source / "split_cls" / "train.csv", newline="") as handle:
        official_train = [row["fname"] for row in csv.DictReader(handle)]
    chosen: dict[str, list[str]] = {}
    remaining = {quadrant: [n for n in official_train if n.startswith(quadrant)] for quadrant in QUADRANTS}
    for split, count in per_split.items():  # balanced over the quadrants
        chosen[split] = [remaining[QUADRANTS[i % 4]].pop(0) for i in range(count)]
    (folder / "midis").mkdir(parents=True)
    (folder / "split_cls").mkdir()
    names = [name for names in chosen.values() for name in names]
    for name in names:
        shutil.copy(source / "midis" / f"{name}.mid", folder / "midis" / f"{name}.mid")
    (folder / "label.csv").write_text("ID,4Q,annotator\n" + "".join(f"{n},{n[1]},A\n" for n in names))
    for split, stem in (("train", "train"), ("validation", "val"), ("test", "test")):
        (folder / "split_cls" / f"{stem}.csv").write_text(
            "fname,label\n" + "".join(f"{n},{n[:2]}\n" for n in chosen[split])
        )
    return folder, chosen


@needs_emopia
def test_a_tiny_model_trains_end_to_end_on_a_prepared_emopia_dataset(tmp_path: Path) -> None:
    data_dir, chosen = small_real_emopia(tmp_path / "emopia", {"train": 12, "validation": 4, "test": 4})
    audio_dir = tmp_path / "recordings"
    audio_dir.mkdir()
    recorded = [chosen["train"][0], chosen["test"][1]]  # a couple of real audio files, one in test
    for index, name in enumerate(recorded):
        soundfile.write(audio_dir / f"{name}.wav", tone(3.0, 22050, 330 + 110 * index), 22050)
    prepared = prepare(data_dir, tmp_path / "prepared", tmp_path / "builder-cache", audio_dir)
    dataset_dict = datasets.load_from_disk(str(prepared / "dataset_dict"))
    assert {split: list(data["id"]) for split, data in dataset_dict.items()} == chosen

    output, cache = tmp_path / "run", tmp_path / "features"
    metrics = train(
        arguments(
            dataset_path=str(prepared),
            allow_random_encoders=True,
            output_dir=str(output),
            cache_dir=str(cache),
            epochs=2,
            batch_size=4,
            midi_mode="rescaled",
            max_audio_seconds=3.0,
            early_stopping_patience=5,
            progress=False,
        )
    )
    assert metrics["train_clips"] == 12  # the dataset's split, not EMOPIA's official one (all 20 in train)
    for split in ("validation", "test"):
        assert metrics[split]["count"] == 4
        # rows of the confusion matrix: the dataset's labels of the split's clips
        label_counts = np.bincount(dataset_dict[split]["label"], minlength=4).tolist()
        assert [sum(row) for row in metrics[split]["confusion_matrix"]] == label_counts
    assert metrics["arguments"]["dataset_path"] == str(prepared)
    assert (output / "config.json").is_file() and "--dataset-path" in (output / "README.md").read_text()
    # the recordings were decoded by the package's front end from the files their bytes were written to
    written = sorted(path.name for path in (cache / "dataset_files").rglob("*.wav"))
    assert len(written) == 2


def test_an_experiment_suite_runs_on_a_prepared_dataset_and_reads_its_runs_back(
    tmp_path: Path, recorded: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`poolingvq experiment --dataset-path DIR`: each run trains on the dataset; a rerun from another directory
    (the path given relative) finds the runs done, not trained again."""
    from poolingvq import experiments

    prepared, _ = recorded
    base = arguments(
        dataset_path=str(prepared),
        allow_random_encoders=True,
        output_dir=str(tmp_path / "suite"),
        cache_dir=str(tmp_path / "features"),
        epochs=1,
        batch_size=2,
        midi_mode="rescaled",
        max_audio_seconds=2.0,
        progress=False,
    )
    result = experiments.run_suite(base, "table1", seeds=1)
    assert [run["variant"] for run in result["runs"]] == ["all"]
    metrics = (tmp_path / "suite" / "all" / "seed_42" / "metrics.json").read_text()
    assert '"train_clips": 3' in metrics

    monkeypatch.chdir(prepared.parent)
    monkeypatch.setattr(experiments, "train", lambda arguments: pytest.fail("trained again"))
    again = experiments.run_suite(dataclasses.replace(base, dataset_path=prepared.name), "table1", seeds=1)
    assert again["runs"] == result["runs"]
