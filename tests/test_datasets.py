"""Tests of poolingvq/data/ (common.py, emopia.py, vgmidi.py): the EMOPIA and VGMIDI builders.

Three groups:
- on the real data in ../shared/data (skipped when absent): split sizes, per-quadrant counts computed here from
  the CSVs with the csv module (not with the builders' code), no missing file, disjoint splits, the reported
  problems, a stable seeded validation draw;
- the download path, offline: the test writes small archives laid out as the real releases (tiny MIDI files
  made with symusic, with problems planted in them) and serves them from 127.0.0.1;
- audio: the user's files, cached synthesis (a stand-in renderer, and the real synthesizer on two clips).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import math
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile
from shared_data import DATA_DIR, needs_data
from symusic import Note, Score, Track

from poolingvq.data import EmopiaBuilder, VgmidiBuilder, common
from poolingvq.errors_poolingvq import PoolingVQInputError

QUADRANTS = ["Q1", "Q2", "Q3", "Q4"]
# (valence, arousal) -> quadrant, written out here rather than taken from the builders
QUADRANT_OF_SIGNS = {(1, 1): "Q1", (0, 1): "Q2", (0, 0): "Q3", (1, 0): "Q4"}
QUADRANT_OF_PLUS_MINUS = {(1, 1): "Q1", (-1, 1): "Q2", (-1, -1): "Q3", (1, -1): "Q4"}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def quadrant_counts(dataset: datasets.Dataset) -> dict[str, int]:
    names = dataset.features["label"].names
    counts = Counter(names[label] for label in dataset["label"])
    return {quadrant: counts[quadrant] for quadrant in QUADRANTS}


def counts_of(labels: list[str]) -> dict[str, int]:
    counts = Counter(labels)
    return {quadrant: counts[quadrant] for quadrant in QUADRANTS}


def prepare(builder: datasets.DatasetBuilder) -> datasets.DatasetDict:
    builder.download_and_prepare()
    return builder.as_dataset()


# -- real data ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("datasets_cache")


@pytest.fixture(scope="module")
def emopia_paper(real_cache: Path) -> tuple[EmopiaBuilder, datasets.DatasetDict]:
    builder = EmopiaBuilder(
        config_name="paper",
        data_dir=str(DATA_DIR / "emopia"),
        synthesize_audio=False,
        cache_dir=str(real_cache),
    )
    return builder, prepare(builder)


@pytest.fixture(scope="module")
def vgmidi_paper(real_cache: Path) -> tuple[VgmidiBuilder, datasets.DatasetDict]:
    builder = VgmidiBuilder(
        config_name="paper",
        data_dir=str(DATA_DIR / "vgmidi"),
        synthesize_audio=False,
        cache_dir=str(real_cache),
    )
    return builder, prepare(builder)


def check_files_and_disjoint_splits(dataset_dict: datasets.DatasetDict) -> None:
    """Every example's MIDI file exists and is what `midi` holds; no id is in two splits."""
    seen: set[str] = set()
    for dataset in dataset_dict.values():
        ids = list(dataset["id"])
        assert len(set(ids)) == len(ids)
        assert not seen & set(ids)
        seen |= set(ids)
        for path in dataset["midi_path"]:
            assert Path(path).is_file(), path
        first = dataset[0]
        assert Path(first["midi_path"]).read_bytes() == first["midi"]
        assert first["midi_path"].endswith(first["midi_file"])
        assert first["audio_path"] is None  # synthesize_audio=False and no audio_dir


@needs_data
def test_emopia_paper_split_matches_split_cls(
    emopia_paper: tuple[EmopiaBuilder, datasets.DatasetDict],
) -> None:
    builder, dataset_dict = emopia_paper
    assert list(dataset_dict) == ["train", "validation", "test"]
    for split, stem in (("train", "train"), ("validation", "val"), ("test", "test")):
        records = read_csv(DATA_DIR / "emopia" / "split_cls" / f"{stem}.csv")
        assert len(dataset_dict[split]) == len(records)
        assert quadrant_counts(dataset_dict[split]) == counts_of([record["label"] for record in records])
        assert sorted(dataset_dict[split]["id"]) == sorted(record["fname"] for record in records)
    assert [len(dataset_dict[split]) for split in dataset_dict] == [767, 198, 86]
    check_files_and_disjoint_splits(dataset_dict)
    # The 27 clips of the release that split_cls leaves out are reported, not silently dropped.
    listed = {
        row["fname"]
        for stem in ("train", "val", "test")
        for row in read_csv(DATA_DIR / "emopia/split_cls" / f"{stem}.csv")
    }
    outside = {path.stem for path in (DATA_DIR / "emopia" / "midis").glob("*.mid")} - listed
    reported = {problem.item for problem in builder.problems if problem.kind == "not_in_split"}
    assert reported == outside and len(outside) == 27
    assert builder.stats["songs_in_several_splits"] == []


@needs_data
def test_emopia_release_split_matches_split_clip_csvs(real_cache: Path) -> None:
    builder = EmopiaBuilder(
        config_name="release",
        data_dir=str(DATA_DIR / "emopia"),
        synthesize_audio=False,
        cache_dir=str(real_cache),
    )
    dataset_dict = prepare(builder)
    label_of = {record["ID"]: f"Q{record['4Q']}" for record in read_csv(DATA_DIR / "emopia" / "label.csv")}
    for split, stem in (("train", "train_clip"), ("validation", "val_clip"), ("test", "test_clip")):
        names = [
            record["clip_name"][: -len(".mid")]
            for record in read_csv(DATA_DIR / "emopia/split" / f"{stem}.csv")
        ]
        assert sorted(dataset_dict[split]["id"]) == sorted(names)
        assert quadrant_counts(dataset_dict[split]) == counts_of([label_of[name] for name in names])
    assert [len(dataset_dict[split]) for split in dataset_dict] == [876, 114, 88]
    check_files_and_disjoint_splits(dataset_dict)
    # No song crosses splits in the release; songs are the YouTube id between the quadrant and the clip index.
    songs = {
        split: {name[3:].rsplit("_", 1)[0] for name in data["id"]} for split, data in dataset_dict.items()
    }
    assert not (songs["train"] & songs["validation"]) and not (songs["train"] & songs["test"])
    assert builder.stats["songs_in_several_splits"] == [] and builder.problems == []


@needs_data
def test_vgmidi_paper_split(vgmidi_paper: tuple[VgmidiBuilder, datasets.DatasetDict]) -> None:
    builder, dataset_dict = vgmidi_paper
    assert [len(dataset_dict[split]) for split in ("train", "validation", "test")] == [120, 40, 40]

    def quadrant_of(record: dict[str, str]) -> str:
        return QUADRANT_OF_SIGNS[(int(record["valence"]), int(record["arousal"]))]

    test_records = read_csv(DATA_DIR / "vgmidi" / "vgmidi_test.csv")
    assert sorted(dataset_dict["test"]["id"]) == sorted(
        Path(record["filepath"]).stem for record in test_records
    )
    assert quadrant_counts(dataset_dict["test"]) == counts_of(
        [quadrant_of(record) for record in test_records]
    )

    # train + validation = the 160 distinct training phrases (the first of a repeated row), per quadrant
    first_rows: dict[str, dict[str, str]] = {}
    for record in read_csv(DATA_DIR / "vgmidi" / "vgmidi_train.csv"):
        first_rows.setdefault(record["filepath"], record)
    expected = counts_of([quadrant_of(record) for record in first_rows.values()])
    assert len(first_rows) == 160
    train, validation = quadrant_counts(dataset_dict["train"]), quadrant_counts(dataset_dict["validation"])
    assert {quadrant: train[quadrant] + validation[quadrant] for quadrant in QUADRANTS} == expected
    for quadrant in QUADRANTS:  # stratified: each quadrant gets its share of the 40, rounded either way
        share = 40 * expected[quadrant] / 160
        assert math.floor(share) <= validation[quadrant] <= math.ceil(share)
    check_files_and_disjoint_splits(dataset_dict)

    # The repeated row (Goldeneye_Statue_0, listed twice with different labels) is reported and kept once.
    duplicates = [problem for problem in builder.problems if problem.kind == "duplicate_row"]
    assert [problem.item for problem in duplicates] == ["Goldeneye_Statue_0"]
    assert "kept once" in duplicates[0].action
    assert "Goldeneye_Statue_0" in [*dataset_dict["train"]["id"], *dataset_dict["validation"]["id"]]
    assert "duplicate_row" in dataset_dict["train"].info.description


# The validation phrases of seed 42 must not change between runs or library versions: scores on them are
# compared across runs. Digest of the sorted ids, fixed when the builder was written.
PAPER_VALIDATION_SEED_42_SHA256 = "84e9f81ccfc7c1282373259405f24744d52c5f0f55051b43f1559de7fc000047"


@needs_data
def test_vgmidi_seeded_validation_draw_is_stable(
    vgmidi_paper: tuple[VgmidiBuilder, datasets.DatasetDict], tmp_path: Path
) -> None:
    _, dataset_dict = vgmidi_paper
    validation = sorted(dataset_dict["validation"]["id"])
    assert hashlib.sha256("\n".join(validation).encode()).hexdigest() == PAPER_VALIDATION_SEED_42_SHA256
    again = prepare(
        VgmidiBuilder(
            config_name="paper",
            data_dir=str(DATA_DIR / "vgmidi"),
            synthesize_audio=False,
            cache_dir=str(tmp_path),
        )
    )
    assert sorted(again["validation"]["id"]) == validation
    other_seed = prepare(
        VgmidiBuilder(
            config_name="paper",
            data_dir=str(DATA_DIR / "vgmidi"),
            synthesize_audio=False,
            seed=7,
            cache_dir=str(tmp_path),
        )
    )
    assert sorted(other_seed["validation"]["id"]) != validation
    assert sorted(other_seed["test"]["id"]) == sorted(dataset_dict["test"]["id"])  # the official test set


@needs_data
def test_vgmidi_release_0_2_split_by_piece(real_cache: Path) -> None:
    builder = VgmidiBuilder(
        config_name="release_0.2",
        data_dir=str(DATA_DIR / "vgmidi"),
        synthesize_audio=False,
        cache_dir=str(real_cache),
    )
    dataset_dict = prepare(builder)
    records = read_csv(DATA_DIR / "vgmidi" / "release_0.2" / "vgmidi_labelled.csv")
    expected = counts_of([QUADRANT_OF_PLUS_MINUS[(int(r["valence"]), int(r["arousal"]))] for r in records])
    totals = Counter()
    for dataset in dataset_dict.values():
        totals.update(quadrant_counts(dataset))
    assert dict(totals) == expected and sum(totals.values()) == len(records) == 204
    check_files_and_disjoint_splits(dataset_dict)

    # 6:2:2 over pieces, and the phrases of one piece stay together
    pieces = {split: {Path(path).name for path in data["midi_path"]} for split, data in dataset_dict.items()}
    assert [len(pieces[split]) for split in ("train", "validation", "test")] == [120, 40, 40]
    assert not (pieces["train"] & pieces["validation"]) and not (pieces["train"] & pieces["test"])
    assert not (pieces["validation"] & pieces["test"])

    kinds = Counter(problem.kind for problem in builder.problems)
    # the copy in ../shared/data has full pieces only; 3 pieces carry 2-3 labelled phrases; 4 files are unlabelled
    assert kinds == {"phrase_file_missing": 1, "rows_share_a_midi_file": 3, "not_labelled": 4}


@needs_data
def test_prepared_data_is_reused_with_its_report(
    emopia_paper: tuple[EmopiaBuilder, datasets.DatasetDict],
    real_cache: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, _ = emopia_paper
    again = EmopiaBuilder(
        config_name="paper",
        data_dir=str(DATA_DIR / "emopia"),
        synthesize_audio=False,
        cache_dir=str(real_cache),
    )
    with caplog.at_level("WARNING", logger="poolingvq.data.common"):
        again.download_and_prepare()
    assert not caplog.records  # nothing was generated again, so nothing logged again
    assert again.problems == first.problems and again.stats == first.stats


# -- the download path, offline -----------------------------------------------------------------------------------


def tiny_midi(pitch: int) -> bytes:
    """A one-note MIDI file; the pitch makes each file's content (and synthesis cache key) different."""
    score = Score(480)
    track = Track(name="piano", program=0)
    track.notes.append(Note(time=0, duration=480, pitch=pitch, velocity=90))
    score.tracks.append(track)
    return score.dumps_midi()


@pytest.fixture()
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """(a folder, the http://127.0.0.1:port URL serving it), with datasets' offline switch off for the test."""
    folder = tmp_path / "served"
    folder.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=folder)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # HF_HUB_OFFLINE / HF_DATASETS_OFFLINE (set on CI machines without network) would refuse even 127.0.0.1.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def write_zip(path: Path, files: dict[str, bytes | str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)


# EMOPIA-like release: 2 songs per quadrant, 2 clips each
EMOPIA_CLIPS = [f"Q{q}_song{q}{s}_{c}" for q in range(1, 5) for s in "ab" for c in range(2)]


def emopia_archive(folder: Path) -> None:
    """EMOPIA_1.0.zip as on Zenodo, with planted problems; and EMOPIA_cls's split CSVs next to it."""
    present = [name for name in EMOPIA_CLIPS if name != "Q4_song4b_1"]  # planted: a listed clip is missing
    files: dict[str, bytes | str] = {
        f"EMOPIA_1.0/midis/{name}.mid": tiny_midi(60 + i) for i, name in enumerate(present)
    }
    files["EMOPIA_1.0/label.csv"] = "ID,4Q,annotator\n" + "".join(f"{n},{n[1]},A\n" for n in EMOPIA_CLIPS)
    songs_b = [name for name in EMOPIA_CLIPS if "b_" in name]
    songs_a = [name for name in EMOPIA_CLIPS if "a_" in name]
    clip_csv = {"train": songs_a, "val": songs_b[:4], "test": songs_b[4:]}
    for split, names in clip_csv.items():
        files[f"EMOPIA_1.0/split/{split}_clip.csv"] = ",clip_name\n" + "".join(
            f"{i},{n}.mid\n" for i, n in enumerate(names)
        )
    write_zip(folder / "EMOPIA_1.0.zip", files)
    # split_cls: song1a crosses train/test (planted), and Q2_song2a_0 is labelled Q3 in the CSV (planted)
    cls_lists = {"train": songs_a[1:], "val": songs_b[:4], "test": [songs_a[0], *songs_b[4:]]}
    (folder / "split").mkdir()
    for split, names in cls_lists.items():
        rows = "".join(f"{n},{'Q3' if n == 'Q2_song2a_0' else n[:2]}\n" for n in names)
        (folder / "split" / f"{split}.csv").write_text("fname,label\n" + rows)


def test_emopia_download_from_archive_url(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    emopia_archive(folder)
    builder = EmopiaBuilder(
        config_name="paper",
        archive_url=f"{url}/EMOPIA_1.0.zip",
        split_csv_url=f"{url}/split/{{name}}.csv",
        synthesize_audio=False,
        cache_dir=str(tmp_path / "cache"),
    )
    dataset_dict = prepare(builder)
    assert {split: len(data) for split, data in dataset_dict.items()} == {
        "train": 7,
        "validation": 4,
        "test": 4,
    }
    assert "Q1_song1a_0" in list(dataset_dict["test"]["id"])
    problems = {(problem.kind, problem.item): problem for problem in builder.problems}
    assert problems[("missing_file", "Q4_song4b_1")].action == "dropped"
    assert "the file name" in problems[("label_mismatch", "Q2_song2a_0")].action
    assert problems[("song_in_several_splits", "song1a")].detail == "clips in train, test"
    assert builder.stats["songs_in_several_splits"] == ["song1a"]
    names = dataset_dict["train"].features["label"].names
    labels = dict(zip(dataset_dict["train"]["id"], dataset_dict["train"]["label"], strict=True))
    assert names[labels["Q2_song2a_0"]] == "Q2"  # the file name's quadrant wins

    release = prepare(
        EmopiaBuilder(
            config_name="release",
            archive_url=f"{url}/EMOPIA_1.0.zip",
            synthesize_audio=False,
            cache_dir=str(tmp_path / "cache"),
        )
    )
    assert {split: len(data) for split, data in release.items()} == {"train": 8, "validation": 4, "test": 3}


def test_vgmidi_download_from_archive_url(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    root = "vgmidi-c9300f5bb54da16daa8bea89489db5dc83657d98"
    signs = [(1, 1), (0, 1), (0, 0), (1, 0)]
    phrases = [f"Game_Piece{q}{i}_0" for q in range(4) for i in range(4)]
    files: dict[str, bytes | str] = {
        f"{root}/phrases/split_1/{p}.mid": tiny_midi(50 + i) for i, p in enumerate(phrases)
    }
    train, test = [p for p in phrases if not p.endswith("3_0")], [p for p in phrases if p.endswith("3_0")]

    def csv_rows(names: list[str]) -> str:
        return "".join(
            f"{signs[int(n[10])][0]},{signs[int(n[10])][1]},piece_{i},0,-1,phrases/split_1/{n}.mid\n"
            for i, n in enumerate(names)
        )

    header = "valence,arousal,id,part,repeat,filepath\n"
    files[f"{root}/vgmidi_train.csv"] = (
        header + csv_rows(train) + csv_rows(train[:1])
    )  # planted: a repeated row
    files[f"{root}/vgmidi_test.csv"] = header + csv_rows(test)
    write_zip(folder / "vgmidi.zip", files)

    builder = VgmidiBuilder(
        config_name="paper",
        archive_url=f"{url}/vgmidi.zip",
        validation_size=4,
        synthesize_audio=False,
        cache_dir=str(tmp_path / "cache"),
    )
    dataset_dict = prepare(builder)
    assert {split: len(data) for split, data in dataset_dict.items()} == {
        "train": 8,
        "validation": 4,
        "test": 4,
    }
    assert quadrant_counts(dataset_dict["validation"]) == {"Q1": 1, "Q2": 1, "Q3": 1, "Q4": 1}
    assert [(p.kind, p.item) for p in builder.problems] == [("duplicate_row", "Game_Piece00_0")]
    example = dataset_dict["test"][0]
    assert example["valence"] in (-1, 1) and example["arousal"] in (-1, 1) and example["game"] is None


def test_missing_data_dir_is_a_clear_input_error(tmp_path: Path) -> None:
    builder = EmopiaBuilder(config_name="paper", data_dir=str(tmp_path / "nowhere"), cache_dir=str(tmp_path))
    with pytest.raises(PoolingVQInputError, match="does not exist"):
        builder.download_and_prepare()
    (tmp_path / "empty").mkdir()
    builder = EmopiaBuilder(config_name="paper", data_dir=str(tmp_path / "empty"), cache_dir=str(tmp_path))
    with pytest.raises(PoolingVQInputError, match="no label.csv"):
        builder.download_and_prepare()


# -- audio --------------------------------------------------------------------------------------------------------


def small_emopia(folder: Path) -> Path:
    """An unzipped EMOPIA-like release with 4 clips (one per quadrant) and EMOPIA_cls split files."""
    names = [f"Q{q}_song{q}_0" for q in range(1, 5)]
    (folder / "midis").mkdir(parents=True)
    for i, name in enumerate(names):
        (folder / "midis" / f"{name}.mid").write_bytes(tiny_midi(60 + 2 * i))
    (folder / "label.csv").write_text("ID,4Q,annotator\n" + "".join(f"{n},{n[1]},A\n" for n in names))
    (folder / "split_cls").mkdir()
    for split, chosen in (("train", names[:2]), ("val", names[2:3]), ("test", names[3:])):
        (folder / "split_cls" / f"{split}.csv").write_text(
            "fname,label\n" + "".join(f"{n},{n[:2]}\n" for n in chosen)
        )
    return folder


def test_user_audio_is_used_and_missing_audio_is_synthesized_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = small_emopia(tmp_path / "emopia")
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    soundfile.write(audio_dir / "Q1_song1_0.wav", np.zeros(100, dtype=np.float32), 16000)
    (audio_dir / "Q1_song1_0.mp3").write_bytes(b"")  # the .wav wins, and the choice is reported
    rendered: list[bytes] = []

    def fake_render(midi_bytes: bytes, settings: common.SynthesisSettings) -> np.ndarray:
        rendered.append(midi_bytes)
        return np.full(settings.sample_rate // 10, 0.25, dtype=np.float32)

    monkeypatch.setattr(common, "render_midi_audio", fake_render)
    cache = tmp_path / "synth"

    def build(datasets_cache: str, **options: object) -> tuple[EmopiaBuilder, datasets.DatasetDict]:
        builder = EmopiaBuilder(
            config_name="paper",
            data_dir=str(data_dir),
            audio_dir=str(audio_dir),
            audio_cache_dir=str(cache),
            cache_dir=str(tmp_path / datasets_cache),
            **options,
        )
        return builder, prepare(builder)

    builder, dataset_dict = build("first")
    paths = {row["id"]: row["audio_path"] for split in dataset_dict.values() for row in split}
    assert paths["Q1_song1_0"] == str(audio_dir / "Q1_song1_0.wav")
    synthesized = [Path(paths[name]) for name in ("Q2_song2_0", "Q3_song3_0", "Q4_song4_0")]
    assert len(rendered) == 3 and all(path.parent == cache and path.suffix == ".flac" for path in synthesized)
    audio, rate = soundfile.read(synthesized[0], dtype="float32")
    assert rate == 24000 and audio.shape == (2400,) and np.allclose(audio, 0.25, atol=1e-4)
    assert not list(cache.glob(".*"))  # no temporary file left behind
    kinds = Counter(problem.kind for problem in builder.problems)
    assert kinds == {"several_audio_files": 1, "missing_audio": 3}

    build("second")  # a new preparation: the cache already holds all three
    assert len(rendered) == 3
    build("third", sample_rate=16000)  # other settings, other cache keys
    assert len(rendered) == 6
    _, without = build("fourth", synthesize_audio=False)
    assert list(without["train"]["audio_path"]).count(None) == 1  # Q2 has no file and is not synthesized


def test_audio_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "cache" / "clip.flac"
    common.write_audio_atomically(target, np.linspace(-2, 2, 1000, dtype=np.float32), 8000)
    audio, _ = soundfile.read(target, dtype="float32")
    assert audio.min() >= -1 and audio.max() <= 1  # clipped, not wrapped

    def failing_write(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(soundfile, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        common.write_audio_atomically(tmp_path / "cache" / "other.flac", np.zeros(10, np.float32), 8000)
    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == ["clip.flac"]


def test_cache_key_covers_midi_content_and_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    soundfont = tmp_path / "font.sf2"
    soundfont.write_bytes(b"RIFF one")
    settings = common.SynthesisSettings(24000, str(soundfont), 60.0)
    key = settings.cache_key(b"MThd a")
    assert key == common.SynthesisSettings(24000, str(soundfont), 60.0).cache_key(b"MThd a")
    assert key != settings.cache_key(b"MThd b")
    assert key != common.SynthesisSettings(22050, str(soundfont), 60.0).cache_key(b"MThd a")
    assert key != common.SynthesisSettings(24000, str(soundfont), 30.0).cache_key(b"MThd a")
    other_font = tmp_path / "other.sf2"
    other_font.write_bytes(b"RIFF two")
    assert key != common.SynthesisSettings(24000, str(other_font), 60.0).cache_key(b"MThd a")
    # Issue 11: keyed as the feature cache keys its synthesized clips, pedal, level, retuning and symusic included
    assert key != common.SynthesisSettings(24000, str(soundfont), 60.0, sustain_pedal=False).cache_key(
        b"MThd a"
    )
    assert key != common.SynthesisSettings(24000, str(soundfont), 60.0, level="velocity").cache_key(b"MThd a")
    monkeypatch.setattr("poolingvq.synthesis_poolingvq.RETUNE_VERSION", 99)
    assert key != settings.cache_key(b"MThd a")
    monkeypatch.undo()
    monkeypatch.setattr("symusic.__version__", "0.0.0")
    assert key != settings.cache_key(b"MThd a")


def test_the_dataset_and_the_feature_cache_describe_synthesis_alike(tmp_path: Path) -> None:
    from poolingvq.feature_extraction_poolingvq import PoolingVQFeatureExtractor
    from poolingvq.features import preprocessing_settings
    from poolingvq.tokenization_poolingvq import CPMidiTokenizer

    soundfont = tmp_path / "font.sf2"
    soundfont.write_bytes(b"RIFF one")
    for options in ({}, {"sustain_pedal": False}, {"level": "velocity"}):
        features_side = preprocessing_settings(
            PoolingVQFeatureExtractor(), CPMidiTokenizer(), 1, {"soundfont": str(soundfont), **options}
        )["synthesis"]
        assert features_side == common.synthesis_settings(str(soundfont), **options)


def test_leftovers_of_killed_synthesis_writers_are_removed(tmp_path: Path) -> None:
    # Failure 6: `.partial` files stayed in the synthesis cache after a kill.
    import os
    import subprocess
    import sys
    import time

    from poolingvq.files_poolingvq import HOST, ORPHANED_TEMP_FILE_SECONDS

    cache = tmp_path / "synth"
    cache.mkdir()
    dead = int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout
    )
    (cache / f".{'a' * 64}.flac.{dead}.x1y.{HOST}.tmp").write_bytes(b"half")
    old_partial = cache / f".{'b' * 64}.k2j3.partial"  # the earlier writer's name: no pid, so by age
    old_partial.write_bytes(b"half")
    long_ago = time.time() - 2 * ORPHANED_TEMP_FILE_SECONDS
    os.utime(old_partial, (long_ago, long_ago))
    (cache / "kept.flac").write_bytes(b"whole")
    builder = EmopiaBuilder(
        config_name="paper",
        data_dir=str(small_emopia(tmp_path / "emopia")),
        audio_cache_dir=str(cache),
        cache_dir=str(tmp_path / "datasets"),
    )
    common.AudioResolver(builder.config, cache, lambda *args: None)
    assert sorted(path.name for path in cache.iterdir()) == ["kept.flac"]


@needs_data
def test_real_synthesis_of_a_few_emopia_clips(tmp_path: Path) -> None:
    settings = common.SynthesisSettings(24000, None, 3.0)
    for name in ("Q1_0vLPYiPN7qY_0", "Q3_0EWWyyV7RJA_0"):
        midi = (DATA_DIR / "emopia" / "midis" / f"{name}.mid").read_bytes()
        path = common.synthesized_audio_file(midi, tmp_path, settings)
        audio, rate = soundfile.read(path, dtype="float32")
        assert rate == 24000 and 0 < len(audio) <= 3 * 24000 and np.abs(audio).max() > 0.01
        assert common.synthesized_audio_file(midi, tmp_path, settings) == path  # served from the cache
