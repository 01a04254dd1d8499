"""Tests of dataset_scripts/prepare.py: `poolingvq prepare-dataset`, called as the CLI calls it."""

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

from dataset_scripts.prepare import add_prepare_dataset_arguments, prepare_dataset_command
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
