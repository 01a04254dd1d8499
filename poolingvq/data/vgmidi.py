"""VGMIDI (Ferreira & Whitehead, ISMIR 2019) as a Hugging Face dataset: piano arrangements of video game music
labelled with the signs of valence and arousal, hence with a quadrant of Russell's plane.

    builder = VgmidiBuilder(config_name="paper", data_dir="path/to/vgmidi")  # or no data_dir: download
    builder.download_and_prepare()
    dataset = builder.as_dataset()  # DatasetDict: train / validation / test
    builder.problems                # what was wrong in the source data, and what was done about it

Configs:
- `paper` (default): the 200 labelled phrases of the first release (`phrases/split_1/`), the version the
  PoolingVQ paper uses. test = the release's own 40 (`vgmidi_test.csv`); validation = 40 of the 160 distinct
  training phrases, drawn with `seed`, stratified by quadrant; train = the other 120.
- `release_0.2`: the 204 labelled rows of the later release (`vgmidi_labelled.csv`), split 6:2:2 by a seeded
  draw stratified by quadrant. The draw is over *pieces*: rows that are phrases of one piece stay in one split.
  Each row's MIDI is its phrase file (`labelled/phrases/...`) when present, else the full piece (`midi/`).

Quadrants: Q1 = V+A+, Q2 = V-A+, Q3 = V-A-, Q4 = V+A-. Valence and arousal are given as -1 / +1 in both configs
(the first release writes them 0 / 1).
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import datasets
from sklearn.model_selection import train_test_split

from .common import MusicEmotionBuilder, MusicEmotionConfig, quadrant, read_csv_rows

# Pinned commits of github.com/lucasnfe/vgmidi: the first release (vgmidi_train/test.csv, phrases/split_1/) and
# the one whose vgmidi_labelled.csv has the 204 labelled rows of release 0.2.
VGMIDI_PAPER_ARCHIVE_URL = (
    "https://github.com/lucasnfe/vgmidi/archive/c9300f5bb54da16daa8bea89489db5dc83657d98.zip"
)
VGMIDI_RELEASE_ARCHIVE_URL = (
    "https://github.com/lucasnfe/vgmidi/archive/01b6e0dcaa30ba8b2a93f3a050653023b9306976.zip"
)
RELEASE_TEST_FRACTION = 0.2  # release_0.2 config: 6:2:2
RELEASE_VALIDATION_FRACTION = 0.2
# Folders, relative to vgmidi_labelled.csv's, that may hold the full pieces of release 0.2.
PIECE_FOLDERS = ("midi", "labelled/midi")

_CITATION = """\
@inproceedings{ferreira_ismir_2019,
  title={Learning to Generate Music with Sentiment},
  author={Ferreira, Lucas N. and Whitehead, Jim},
  booktitle={Proceedings of the International Society for Music Information Retrieval Conference (ISMIR)},
  year={2019}
}
"""


def piece_of(phrase_stem: str) -> str:
    """ "Game_Piece_3" -> "Game_Piece": the piece a numbered phrase is cut from."""
    return re.sub(r"_\d+$", "", phrase_stem)


@dataclasses.dataclass
class VgmidiConfig(MusicEmotionConfig):
    """VGMIDI's configuration. `validation_size` (paper config): how many of the training phrases are drawn
    for validation; 40, as many as the official test set."""

    validation_size: int = 40


class VgmidiBuilder(MusicEmotionBuilder):
    """VGMIDI's labelled pieces with the paper's split or a seeded 6:2:2 split; see the module docstring."""

    BUILDER_CONFIG_CLASS = VgmidiConfig
    BUILDER_CONFIGS = [
        VgmidiConfig(
            name="paper",
            description="The 200 phrases of the first release: official 40 test, seeded 40 validation, 120 train.",
            archive_url=VGMIDI_PAPER_ARCHIVE_URL,
        ),
        VgmidiConfig(
            name="release_0.2",
            description="The 204 labelled rows of release 0.2, seeded 6:2:2 split by piece, stratified.",
            archive_url=VGMIDI_RELEASE_ARCHIVE_URL,
        ),
    ]
    DEFAULT_CONFIG_NAME = "paper"
    DESCRIPTION = (
        "VGMIDI: piano arrangements of video game music in MIDI, annotated by 30 listeners each along valence "
        "and arousal; the label is the quadrant of the signs (Q1 = V+A+, Q2 = V-A+, Q3 = V-A-, Q4 = V+A-). "
        "Audio comes from the user's own files, or is synthesized from the MIDI."
    )
    HOMEPAGE = "https://github.com/lucasnfe/vgmidi"
    LICENSE = "unknown"  # the repository states no licence
    CITATION = _CITATION
    EXTRA_FEATURES = {
        "valence": datasets.Value("int8"),  # -1 or +1
        "arousal": datasets.Value("int8"),  # -1 or +1
        "piece_id": datasets.Value("string"),  # the release's own id of the annotated piece
        "series": datasets.Value("string"),  # release 0.2 only
        "console": datasets.Value("string"),
        "game": datasets.Value("string"),
        "piece": datasets.Value("string"),
    }

    @classmethod
    def release_marker_of(cls, config_name: str) -> str:
        return "vgmidi_labelled.csv" if config_name == "release_0.2" else "vgmidi_train.csv"

    def _read_splits(
        self, release_root: Path, dl_manager: datasets.DownloadManager
    ) -> dict[str, list[dict[str, Any]]]:
        if self.config.name == "release_0.2":
            return self._read_release_0_2(release_root)
        return self._read_paper(release_root)

    # -- paper: the first release ----------------------------------------------------------------------------

    def _read_paper(self, root: Path) -> dict[str, list[dict[str, Any]]]:
        listed = {
            split: self._read_phrase_list(root, root / f"vgmidi_{split}.csv") for split in ("train", "test")
        }
        self._report_unlisted_files(root, [row for rows in listed.values() for row in rows], "not_in_split")
        splits = self._keep_each_id_once(
            {split: self._keep_midi_files(rows) for split, rows in listed.items()}
        )
        train, validation = self._stratified_draw(splits["train"], self.config.validation_size)
        return {"train": train, "validation": validation, "test": splits["test"]}

    def _read_phrase_list(self, root: Path, csv_path: Path) -> list[dict[str, Any]]:
        """Rows of vgmidi_train/test.csv (valence,arousal,id,part,repeat,filepath; valence/arousal 0 or 1)."""
        rows = []
        records = read_csv_rows(csv_path, ("valence", "arousal", "id", "filepath"))
        for line, record in enumerate(records, start=2):
            midi_file = record["filepath"]
            signs = self._signs(record["valence"], record["arousal"], {"0": -1, "1": 1})
            if signs is None:
                detail = (
                    f"{csv_path.name} line {line}: valence/arousal {record['valence']}/{record['arousal']}"
                )
                self._report("bad_label", Path(midi_file).stem, f"{detail}, not 0 or 1", "dropped")
                continue
            rows.append(self._row(root, midi_file, Path(midi_file).stem, signs, record["id"], {}))
        return rows

    # -- release 0.2 -----------------------------------------------------------------------------------------

    def _read_release_0_2(self, root: Path) -> dict[str, list[dict[str, Any]]]:
        rows, full_pieces_used = [], 0
        columns = ("id", "series", "console", "game", "piece", "midi", "valence", "arousal")
        for line, record in enumerate(read_csv_rows(root / "vgmidi_labelled.csv", columns), start=2):
            phrase_stem = Path(record["midi"]).stem
            signs = self._signs(record["valence"], record["arousal"], {"-1": -1, "1": 1})
            if signs is None:
                detail = f"line {line}: valence/arousal {record['valence']}/{record['arousal']}, not -1 or 1"
                self._report("bad_label", phrase_stem, detail, "dropped")
                continue
            midi_file = self._release_midi_file(root, record["midi"])
            full_pieces_used += midi_file != record["midi"]
            metadata = {key: record[key] for key in ("series", "console", "game", "piece")}
            rows.append(self._row(root, midi_file, phrase_stem, signs, record["id"], metadata))
        if full_pieces_used:
            self._report(
                "phrase_file_missing",
                f"{full_pieces_used} rows",
                "the phrase files named in vgmidi_labelled.csv are not in the data folder",
                "kept, with the full piece from midi/ as their MIDI",
            )
        self._report_unlisted_files(root, rows, "not_labelled", only_in=PIECE_FOLDERS)
        rows = self._keep_each_id_once({"train": self._keep_midi_files(rows)})["train"]
        self._report_rows_sharing_a_midi_file(rows)
        return self._split_by_piece(rows)

    def _release_midi_file(self, root: Path, phrase_file: str) -> str:
        """The row's phrase file if the folder has it, else its full piece (the copy of release 0.2 in
        ../shared/data holds only `midi/`); returned relative to the release root."""
        if (root / phrase_file).is_file():
            return phrase_file
        piece_file = f"{piece_of(Path(phrase_file).stem)}.mid"
        for folder in PIECE_FOLDERS:
            if (root / folder / piece_file).is_file():
                return f"{folder}/{piece_file}"
        return phrase_file  # missing: reported and dropped by _keep_midi_files

    def _report_rows_sharing_a_midi_file(self, rows: list[dict[str, Any]]) -> None:
        by_file: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_file[row["midi_file"]].append(row)
        shared = {midi_file: group for midi_file, group in by_file.items() if len(group) > 1}
        self._stats["midi_files_shared_by_rows"] = len(shared)
        for midi_file, group in shared.items():
            labels = ", ".join(f"{row['id']} = {row['label']}" for row in group)
            self._report("rows_share_a_midi_file", midi_file, f"rows {labels}", "kept, all in one split")

    def _split_by_piece(self, rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Seeded 6:2:2 split of the pieces, stratified by the quadrant of each piece's first row; every row
        follows its piece, so no piece is heard in two splits."""
        first_rows: dict[str, dict[str, Any]] = {}
        for row in rows:
            first_rows.setdefault(piece_of(row["id"]), row)
        pieces = list(first_rows.values())
        test_size = round(RELEASE_TEST_FRACTION * len(pieces))
        validation_size = round(RELEASE_VALIDATION_FRACTION * len(pieces))
        rest, test = self._stratified_draw(pieces, test_size)
        train, validation = self._stratified_draw(rest, validation_size)
        split_of_piece = {
            piece_of(row["id"]): split
            for split, drawn in (("train", train), ("validation", validation), ("test", test))
            for row in drawn
        }
        self._stats["pieces_per_split"] = {
            "train": len(train),
            "validation": len(validation),
            "test": len(test),
        }
        return {
            split: [row for row in rows if split_of_piece[piece_of(row["id"])] == split]
            for split in ("train", "validation", "test")
        }

    # -- shared ----------------------------------------------------------------------------------------------

    def _stratified_draw(
        self, rows: list[dict[str, Any]], size: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(the rest, `size` rows drawn with the config's seed, stratified by label), each in the input order."""
        indices = list(range(len(rows)))
        _, drawn = train_test_split(
            indices, test_size=size, stratify=[row["label"] for row in rows], random_state=self.config.seed
        )
        drawn = set(drawn)
        return [row for i, row in enumerate(rows) if i not in drawn], [
            row for i, row in enumerate(rows) if i in drawn
        ]

    def _signs(self, valence: str, arousal: str, sign_of: dict[str, int]) -> tuple[int, int] | None:
        """(valence sign, arousal sign) from the CSV's values, or None if a value is not one of `sign_of`."""
        if valence.strip() not in sign_of or arousal.strip() not in sign_of:
            return None
        return sign_of[valence.strip()], sign_of[arousal.strip()]

    def _row(
        self,
        root: Path,
        midi_file: str,
        example_id: str,
        signs: tuple[int, int],
        piece_id: str,
        metadata: dict[str, str],
    ) -> dict[str, Any]:
        valence, arousal = signs
        return {
            "id": example_id,
            "label": quadrant(valence > 0, arousal > 0),
            "midi_file": midi_file,
            "midi_path": root / midi_file,
            "valence": valence,
            "arousal": arousal,
            "piece_id": piece_id,
            **{key: metadata.get(key) for key in ("series", "console", "game", "piece")},
        }

    def _report_unlisted_files(
        self, root: Path, rows: list[dict[str, Any]], kind: str, only_in: tuple[str, ...] | None = None
    ) -> None:
        """Report the MIDI files that no row lists, in the folders the rows' files are in (of those, only the
        folders `only_in`: a folder of phrases also holds phrases that were never annotated, by design)."""
        used = {row["midi_file"] for row in rows}
        folders = {str(Path(midi_file).parent) for midi_file in used}
        folders = sorted(folders & set(only_in)) if only_in is not None else sorted(folders)
        unlisted = sorted(
            f"{folder}/{path.name}"
            for folder in folders
            for path in (root / folder).glob("*.mid")
            if f"{folder}/{path.name}" not in used
        )
        self._stats[f"{kind}_files"] = len(unlisted)
        for midi_file in unlisted:
            self._report(kind, midi_file, "a MIDI file of the release that no labelled row lists", "dropped")
