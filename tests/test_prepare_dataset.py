"""Tests of poolingvq/data/prepare.py: `poolingvq prepare-dataset`, called as the CLI calls it."""

from __future__ import annotations

import argparse
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
import soundfile
from huggingface_hub import DatasetCard
from shared_data import DATA_DIR, needs_data
from symusic import Note, Score, Track

from poolingvq.data.prepare import add_prepare_dataset_arguments, prepare_dataset_command
from poolingvq.errors_poolingvq import PoolingVQInputError

CLIPS = {"train": ["Q1_songa_0", "Q2_songb_0", "Q3_songc_0"], "val": ["Q4_songd_0"], "test": ["Q1_songe_0"]}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_prepare_dataset_arguments(parser)
    return parser.parse_args(list(argv))


def small_emopia(folder: Path) -> Path:
    """An EMOPIA-like release of 5 one-note clips, with EMOPIA_cls split files; one clip is in no split."""
    (folder / "midis").mkdir(parents=True)
    names = [name for names in CLIPS.values() for name in names] + ["Q2_songf_0"]
    for index, name in enumerate(names):
        score = Score(480)
        track = Track(name="piano", program=0)
        track.notes.append(Note(time=0, duration=480, pitch=60 + index, velocity=90))
        score.tracks.append(track)
        score.dump_midi(folder / "midis" / f"{name}.mid")
    (folder / "label.csv").write_text("ID,4Q,annotator\n" + "".join(f"{n},{n[1]},A\n" for n in names))
    (folder / "split_cls").mkdir()
    for split, chosen in CLIPS.items():
        (folder / "split_cls" / f"{split}.csv").write_text(
            "fname,label\n" + "".join(f"{n},{n[:2]}\n" for n in chosen)
        )
    return folder


def test_writes_dataset_dict_parquet_and_card(tmp_path: Path) -> None:
    data_dir = small_emopia(tmp_path / "emopia")
    out = tmp_path / "out"
    args = parse(
        "emopia",
        "--data-dir",
        str(data_dir),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--sample-rate",
        "16000",
        "--out",
        str(out),
    )
    assert prepare_dataset_command(args) == 0

    dataset_dict = datasets.load_from_disk(str(out / "dataset_dict"))
    assert {split: len(data) for split, data in dataset_dict.items()} == {
        "train": 3,
        "validation": 1,
        "test": 1,
    }
    audio, rate = soundfile.read(dataset_dict["validation"][0]["audio_path"])  # synthesized, at --sample-rate
    assert rate == 16000 and len(audio) > 0

    for split, data in dataset_dict.items():
        table = pq.read_table(out / "data" / "paper" / f"{split}-00000-of-00001.parquet")
        assert table.num_rows == len(data)
        assert "midi_path" not in table.column_names and "audio_path" not in table.column_names
        assert table.column("midi").to_pylist() == list(data["midi"])
        assert datasets.Features.from_arrow_schema(table.schema)["label"].names == ["Q1", "Q2", "Q3", "Q4"]

    card = DatasetCard.load(out / "README.md")
    assert card.data.license == "cc-by-nc-sa-4.0" and card.data.task_categories == ["audio-classification"]
    assert card.data.configs == [
        {
            "config_name": "paper",
            "data_files": [
                {"split": split, "path": f"data/paper/{split}-*.parquet"}
                for split in ("train", "validation", "test")
            ],
        }
    ]
    assert "| train | 3 | 1 | 1 | 1 | 0 |" in card.text  # clips, then Q1..Q4
    assert "| validation | 1 | 0 | 0 | 0 | 1 |" in card.text
    assert "[not_in_split] Q2_songf_0" in card.text  # the reported problem travels with the card
    assert "@inproceedings{hung2021emopia" in card.text


def test_unknown_config_is_an_input_error(tmp_path: Path) -> None:
    args = parse("vgmidi", "--config", "release", "--no-synthesize", "--out", str(tmp_path / "out"))
    with pytest.raises(PoolingVQInputError, match="choose one of paper, release_0.2"):
        prepare_dataset_command(args)


@needs_data
def test_real_vgmidi_paper_from_a_namespace(tmp_path: Path) -> None:
    args = argparse.Namespace(
        dataset="vgmidi",
        data_dir=str(DATA_DIR / "vgmidi"),
        config=None,
        audio_dir=None,
        no_synthesize=True,
        soundfont=None,
        sample_rate=24000,
        max_seconds=60.0,
        seed=42,
        cache_dir=str(tmp_path / "cache"),
        out=str(tmp_path / "out"),
    )
    assert prepare_dataset_command(args) == 0
    card = DatasetCard.load(tmp_path / "out" / "README.md")
    assert card.data.configs[0]["config_name"] == "paper" and card.data.license == "unknown"
    for split, size in (("train", 120), ("validation", 40), ("test", 40)):
        assert (
            pq.read_metadata(tmp_path / "out" / "data" / "paper" / f"{split}-00000-of-00001.parquet").num_rows
            == size
        )
    assert "[duplicate_row] Goldeneye_Statue_0" in card.text


# -- issue 11: stale caches, atomic output, malformed releases ----------------------------------------------------


def prepare_cli(data_dir: Path, cache: Path, out: Path) -> int:
    """`poolingvq prepare-dataset emopia ...` as the console script runs it (exit status, errors on stderr)."""
    from poolingvq.cli import main

    return main(
        [
            "prepare-dataset",
            "emopia",
            "--data-dir",
            str(data_dir),
            "--cache-dir",
            str(cache),
            "--no-synthesize",
        ]
        + ["--out", str(out)]
    )


def split_ids(out: Path) -> dict[str, list[str]]:
    return {
        split: list(data["id"]) for split, data in datasets.load_from_disk(str(out / "dataset_dict")).items()
    }


def test_a_changed_release_is_prepared_afresh_not_served_from_the_cache(tmp_path: Path) -> None:
    # Failure 1: after deleting MIDI files and relabelling label.csv in the same --data-dir, a rerun printed the
    # same counts and listed the deleted clips, pointing at files that no longer existed.
    data_dir = small_emopia(tmp_path / "emopia")
    assert prepare_cli(data_dir, tmp_path / "cache", tmp_path / "out") == 0
    assert split_ids(tmp_path / "out")["train"] == CLIPS["train"]
    (data_dir / "midis" / "Q2_songb_0.mid").unlink()
    label_csv = data_dir / "label.csv"
    label_csv.write_text(label_csv.read_text().replace("Q1_songa_0,1,", "Q1_songa_0,3,"))
    assert prepare_cli(data_dir, tmp_path / "cache", tmp_path / "out") == 0
    assert split_ids(tmp_path / "out")["train"] == ["Q1_songa_0", "Q3_songc_0"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert "[missing_file] Q2_songb_0" in card and "[label_mismatch] Q1_songa_0: label.csv says Q3" in card


def test_out_is_replaced_whole_even_when_the_run_is_killed(tmp_path: Path) -> None:
    # Failure 3: killed while it wrote, prepare-dataset left a folder load_from_disk could not read, and killed
    # while overwriting an earlier output it destroyed that output.
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    data_dir, cache, out = small_emopia(tmp_path / "emopia"), tmp_path / "cache", tmp_path / "out"
    assert prepare_cli(data_dir, cache, out) == 0
    before = split_ids(out)
    (data_dir / "midis" / "Q3_songc_0.mid").unlink()  # the next run writes another output
    script = tmp_path / "killed.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys
            import huggingface_hub
            from poolingvq.cli import main
            # killed after the dataset_dict and the Parquet files are written, while the card is written
            huggingface_hub.DatasetCard.save = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
            main(["prepare-dataset", "emopia", "--data-dir", {str(data_dir)!r}, "--cache-dir", {str(cache)!r},
                  "--no-synthesize", "--out", {str(out)!r}])
            """
        )
    )
    killed = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert split_ids(out) == before  # the earlier output, whole
    leftovers = [path for path in tmp_path.iterdir() if path.name.startswith(".out.")]
    assert len(leftovers) == 1 and (leftovers[0] / "dataset_dict").is_dir()  # the killed run's half output

    assert prepare_cli(data_dir, cache, out) == 0  # a new run replaces the output and clears the leftover
    assert "Q3_songc_0" not in split_ids(out)["train"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cache", "emopia", "killed.py", "out"]
    assert sorted(os.listdir(out)) == ["README.md", "data", "dataset_dict"]


def test_a_garbage_file_that_begins_with_mthd_is_reported_and_left_out(tmp_path: Path) -> None:
    data_dir = small_emopia(tmp_path / "emopia")
    (data_dir / "midis" / "Q3_songc_0.mid").write_bytes(b"MThd" + bytes(range(256)) * 4)
    assert prepare_cli(data_dir, tmp_path / "cache", tmp_path / "out") == 0
    assert "Q3_songc_0" not in split_ids(tmp_path / "out")["train"]
    assert "[not_midi] Q3_songc_0: midis/Q3_songc_0.mid: " in (tmp_path / "out" / "README.md").read_text()


def break_header(data_dir: Path) -> str:
    (data_dir / "label.csv").write_text((data_dir / "label.csv").read_text().replace("ID,4Q", "Id,4Q", 1))
    return "label.csv: has no column 'ID' (its header: 'Id', '4Q', 'annotator')"


def break_encoding(data_dir: Path) -> str:
    (data_dir / "label.csv").write_bytes(bytes(range(128, 256)) * 8)
    return "label.csv: is not a text CSV file"


def drop_split_file(data_dir: Path) -> str:
    (data_dir / "split_cls" / "val.csv").unlink()
    return "val.csv: is missing"


def drop_midis(data_dir: Path) -> str:
    import shutil

    shutil.rmtree(data_dir / "midis")
    return "has no midis/ folder"


@pytest.mark.parametrize("damage", [break_header, break_encoding, drop_split_file, drop_midis])
def test_a_malformed_release_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture, damage) -> None:
    # Failure 4: each of these gave a raw traceback.
    data_dir = small_emopia(tmp_path / "emopia")
    expected = damage(data_dir)
    assert prepare_cli(data_dir, tmp_path / "cache", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith("poolingvq prepare-dataset: ") and expected in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_out_that_cannot_be_replaced_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    data_dir = small_emopia(tmp_path / "emopia")
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    assert prepare_cli(data_dir, tmp_path / "cache", a_file) == 2
    assert f"--out: {a_file} is a file" in capsys.readouterr().err
    folder = tmp_path / "my_folder"
    folder.mkdir()
    (folder / "thesis.tex").write_text("mine too")
    assert prepare_cli(data_dir, tmp_path / "cache", folder) == 2
    assert "holds other files (thesis.tex)" in capsys.readouterr().err
    assert a_file.read_text() == "mine" and (folder / "thesis.tex").read_text() == "mine too"
    assert not (tmp_path / "cache").exists()  # refused before the builder ran


# -- issue 12: recordings as an Audio column ---------------------------------------------------------------------


def test_recordings_are_an_undecoded_audio_column_with_their_bytes(tmp_path: Path) -> None:
    """The user's recordings travel in the dataset (`Audio(decode=False)`, bytes embedded, no machine path), in
    `dataset_dict/` and in the Parquet files that `load_dataset(folder)` reads; synthesized audio stays out."""
    import numpy as np

    data_dir = small_emopia(tmp_path / "emopia")
    audio_dir = tmp_path / "recordings"
    audio_dir.mkdir()
    tone = (0.2 * np.sin(np.linspace(0, 440 * 2 * np.pi, 8000))).astype("float32")
    soundfile.write(audio_dir / "Q1_songa_0.wav", tone, 8000)
    soundfile.write(audio_dir / "Q4_songd_0.flac", tone[:4000], 8000)
    out = tmp_path / "out"
    args = parse(
        "emopia",
        "--data-dir",
        str(data_dir),
        "--audio-dir",
        str(audio_dir),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--sample-rate",
        "16000",
        "--out",
        str(out),
    )
    assert prepare_dataset_command(args) == 0

    expected = {"Q1_songa_0": audio_dir / "Q1_songa_0.wav", "Q4_songd_0": audio_dir / "Q4_songd_0.flac"}
    from_disk = datasets.load_from_disk(str(out / "dataset_dict"))
    from_parquet = datasets.load_dataset(str(out))
    for loaded in (from_disk, from_parquet):
        for data in loaded.values():
            assert data.features["audio"] == datasets.Audio(decode=False)
            for row in data:
                if row["id"] in expected:
                    assert row["audio"]["bytes"] == expected[row["id"]].read_bytes()
                    assert row["audio"]["path"] == expected[row["id"]].name
                else:  # synthesized (dataset_dict's audio_path says where), not a recording
                    assert row["audio"] is None
    assert from_disk["train"][1]["audio_path"] is not None  # Q2_songb_0: synthesized, locally
    card = (out / "README.md").read_text()
    assert "None otherwise (2 of 5 clips have one)" in card
