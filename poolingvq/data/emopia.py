"""EMOPIA (Hung et al., ISMIR 2021) as a Hugging Face dataset: 1,078 pop piano clips transcribed to MIDI,
each labelled with a quadrant of Russell's valence-arousal plane.

    builder = EmopiaBuilder(config_name="paper", data_dir="path/to/EMOPIA_1.0")  # or no data_dir: download
    builder.download_and_prepare()
    dataset = builder.as_dataset()  # DatasetDict: train / validation / test
    builder.problems                # what was wrong in the source data, and what was done about it

Configs:
- `paper` (default): the 7:2:1 split of EMOPIA's own classification code (github.com/SeungHeonDoh/EMOPIA_cls,
  `split_cls/` here), used by the PoolingVQ paper: 767 / 198 / 86 clips (1,051 of the 1,078).
- `release`: the split shipped with the dataset (`split/*_clip.csv`): 876 / 114 / 88 clips.

The label is the quadrant in the file name (`Q{1..4}_{YouTube id}_{clip}.mid`, as EMOPIA's README defines it);
a CSV that says otherwise is reported and the file name wins. Both splits are meant to be song-level (no song
in two splits); a song found in several splits is reported (warning, `builder.problems`, `builder.stats`).
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import datasets

from ..errors_poolingvq import PoolingVQInputError
from .common import MusicEmotionBuilder, MusicEmotionConfig, read_csv_rows

EMOPIA_ARCHIVE_URL = "https://zenodo.org/records/5090631/files/EMOPIA_1.0.zip"
# EMOPIA_cls's split CSVs (not part of the Zenodo archive), pinned to a commit; "{name}" is train, val or test.
EMOPIA_CLS_SPLIT_URL = (
    "https://raw.githubusercontent.com/SeungHeonDoh/EMOPIA_cls/"
    "4acbaf48230c06a3d1ddafcf6387e495f583832b/dataset/split/{name}.csv"
)
CLIP_NAME = re.compile(r"^(?P<quadrant>Q[1-4])_(?P<song_id>.+)_(?P<clip_index>\d+)$")
# split name -> file name stem, for each config's split files
PAPER_SPLIT_FILES = {"train": "train", "validation": "val", "test": "test"}
RELEASE_SPLIT_FILES = {"train": "train_clip", "validation": "val_clip", "test": "test_clip"}

_CITATION = """\
@inproceedings{hung2021emopia,
  title={{EMOPIA}: A Multi-Modal Pop Piano Dataset For Emotion Recognition and Emotion-based Music Generation},
  author={Hung, Hsiao-Tzu and Ching, Joann and Doh, Seungheon and Kim, Nabin and Nam, Juhan and Yang, Yi-Hsuan},
  booktitle={Proceedings of the 22nd International Society for Music Information Retrieval Conference (ISMIR)},
  year={2021}
}
"""


@dataclasses.dataclass
class EmopiaConfig(MusicEmotionConfig):
    """EMOPIA's configuration. `split_csv_url`: where the `paper` split's CSVs are fetched from when the data
    folder has no `split_cls/` (a template; `{name}` is train, val or test)."""

    split_csv_url: str = EMOPIA_CLS_SPLIT_URL


class EmopiaBuilder(MusicEmotionBuilder):
    """EMOPIA's clips with their official splits; see the module docstring."""

    BUILDER_CONFIG_CLASS = EmopiaConfig
    BUILDER_CONFIGS = [
        EmopiaConfig(
            name="paper",
            description="EMOPIA_cls's 7:2:1 split (split_cls/), used by the PoolingVQ paper: 767/198/86 clips.",
            archive_url=EMOPIA_ARCHIVE_URL,
        ),
        EmopiaConfig(
            name="release",
            description="The split shipped with EMOPIA 1.0 (split/*_clip.csv): 876/114/88 clips.",
            archive_url=EMOPIA_ARCHIVE_URL,
        ),
    ]
    DEFAULT_CONFIG_NAME = "paper"
    DESCRIPTION = (
        "EMOPIA: 1,078 clips of pop piano music (387 songs), transcribed to MIDI, each labelled with a "
        "quadrant of Russell's valence-arousal plane (Q1 = V+A+, Q2 = V-A+, Q3 = V-A-, Q4 = V+A-). Audio is "
        "not part of the release (YouTube ids only): it comes from the user's own files, or is synthesized "
        "from the MIDI."
    )
    HOMEPAGE = "https://annahung31.github.io/EMOPIA/"
    # Sources disagree (MusPy lists CC BY 4.0, the authors' own Hub copy CC BY-NC-SA 4.0): the card states the
    # stricter one, so nobody reuses the data more freely than its authors may have allowed.
    LICENSE = "cc-by-nc-sa-4.0"
    CITATION = _CITATION
    RELEASE_MARKER = "label.csv"
    EXTRA_FEATURES = {"song_id": datasets.Value("string"), "clip_index": datasets.Value("int32")}

    def _read_splits(
        self, release_root: Path, dl_manager: datasets.DownloadManager
    ) -> dict[str, list[dict[str, Any]]]:
        if not (release_root / "midis").is_dir():
            raise PoolingVQInputError(release_root, "has no midis/ folder: EMOPIA's MIDI files are in midis/")
        annotated = self._read_label_csv(release_root / "label.csv")
        split_lists = self._read_split_lists(release_root, dl_manager)
        splits = {}
        for split, listed in split_lists.items():
            rows = []
            for name, csv_label in listed:
                row = self._clip_row(release_root, name)
                if row is None:
                    continue
                self._check_label(row, csv_label, "the split CSV")
                if row["id"] in annotated:
                    self._check_label(row, annotated[row["id"]], "label.csv")
                else:
                    self._report("not_in_label_csv", row["id"], "the clip has no row in label.csv", "kept")
                rows.append(row)
            splits[split] = self._keep_midi_files(rows)
        splits = self._keep_each_id_once(splits)
        self._report_clips_outside_splits(release_root, annotated, splits)
        self._report_songs_in_several_splits(splits)
        return splits

    def _read_split_lists(
        self, release_root: Path, dl_manager: datasets.DownloadManager
    ) -> dict[str, list[tuple[str, str | None]]]:
        """{split: [(clip name, label given by the CSV or None)]} of this config's split files."""
        if self.config.name == "release":
            files = {
                split: release_root / "split" / f"{stem}.csv" for split, stem in RELEASE_SPLIT_FILES.items()
            }
        elif (release_root / "split_cls").is_dir():
            files = {
                split: release_root / "split_cls" / f"{stem}.csv" for split, stem in PAPER_SPLIT_FILES.items()
            }
        else:  # the Zenodo archive does not carry EMOPIA_cls's split: fetch its three small CSVs
            urls = {
                split: self.config.split_csv_url.format(name=stem)
                for split, stem in PAPER_SPLIT_FILES.items()
            }
            files = {split: Path(path) for split, path in dl_manager.download(urls).items()}
        lists = {}
        for split, path in files.items():
            if self.config.name == "release":  # columns ",clip_name", names with ".mid"
                records = read_csv_rows(path, ("clip_name",))
                lists[split] = [(record["clip_name"].removesuffix(".mid"), None) for record in records]
            else:  # columns "fname,label", names without ".mid"
                records = read_csv_rows(path, ("fname", "label"))
                lists[split] = [(record["fname"], record["label"]) for record in records]
        return lists

    def _clip_row(self, release_root: Path, name: str) -> dict[str, Any] | None:
        """The row of a clip named in a split file, or None (reported) when the name is not EMOPIA's pattern."""
        match = CLIP_NAME.match(name)
        if match is None:
            self._report("bad_file_name", name, "not Q{1..4}_{song id}_{clip}", "dropped")
            return None
        midi_file = f"midis/{name}.mid"
        return {
            "id": name,
            "label": match["quadrant"],
            "midi_file": midi_file,
            "midi_path": release_root / midi_file,
            "song_id": match["song_id"],
            "clip_index": int(match["clip_index"]),
        }

    def _read_label_csv(self, path: Path) -> dict[str, str]:
        """{clip id: "Q1".."Q4"} from label.csv (columns ID, 4Q, annotator)."""
        return {record["ID"]: f"Q{record['4Q']}" for record in read_csv_rows(path, ("ID", "4Q"))}

    def _check_label(self, row: dict[str, Any], other_label: str | None, source: str) -> None:
        if other_label is not None and other_label != row["label"]:
            detail = f"{source} says {other_label}, the file name {row['label']}"
            self._report("label_mismatch", row["id"], detail, f"kept as {row['label']} (the file name)")

    def _report_clips_outside_splits(
        self, release_root: Path, annotated: dict[str, str], splits: dict[str, list[dict[str, Any]]]
    ) -> None:
        in_splits = {row["id"] for rows in splits.values() for row in rows}
        on_disk = {path.stem for path in (release_root / "midis").glob("*.mid")}
        outside = sorted((on_disk | annotated.keys()) - in_splits)
        self._stats["clips_in_no_split"] = len(outside)
        for name in outside:
            self._report(
                "not_in_split", name, f"in the release but in no split of '{self.config.name}'", "dropped"
            )

    def _report_songs_in_several_splits(self, splits: dict[str, list[dict[str, Any]]]) -> None:
        """Clips of one song in two splits would leak the song's sound into evaluation: report each such song."""
        song_splits: dict[str, set[str]] = defaultdict(set)
        for split, rows in splits.items():
            for row in rows:
                song_splits[row["song_id"]].add(split)
        shared = sorted(song for song, names in song_splits.items() if len(names) > 1)
        self._stats["songs_per_split"] = {
            split: len({row["song_id"] for row in rows}) for split, rows in splits.items()
        }
        self._stats["songs_in_several_splits"] = shared
        for song in shared:
            order = [split for split in splits if split in song_splits[song]]
            self._report(
                "song_in_several_splits", song, f"clips in {', '.join(order)}", "kept (official split)"
            )
