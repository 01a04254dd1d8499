"""What the EMOPIA and VGMIDI builders share: the features, the configuration, the report of problems found in
the source data, and the audio of each example (the user's own file, or a cached synthesis of its MIDI).

Every problem in the source data is *reported*, never silently dropped or kept: it is logged as a warning (one
line per kind), listed in `builder.problems` with the action taken, and written into the dataset's description,
so it travels with the saved dataset and its card. The kinds, and what is done:

| kind | action |
|---|---|
| missing_file, not_midi: a listed MIDI file is absent / not a readable MIDI file | dropped |
| bad_file_name, bad_label: a name or label the builder cannot read | dropped |
| label_mismatch: a CSV's label disagrees with EMOPIA's file name | kept, labelled by the file name |
| not_in_label_csv: an EMOPIA clip missing from label.csv | kept (its file name gives the label) |
| duplicate_row: a row repeated within a split (labels named if they differ) | kept once, the first |
| in_several_splits: one id in two splits | kept in the evaluation split only |
| song_in_several_splits (EMOPIA): a song's clips in two splits | kept (the official split) |
| not_in_split / not_labelled: a file of the release that no split / label lists | dropped |
| phrase_file_missing, rows_share_a_midi_file (VGMIDI 0.2) | kept, one split per piece |
| several_audio_files, missing_audio, synthesis_failed: audio | kept (with the chosen file / no audio) |

Examples are generated in one process (`num_proc` is ignored) so that every problem, audio ones included,
reaches `builder.problems`; synthesizing all of EMOPIA takes about a minute, once (the audio is cached).

What is reused. The prepared Arrow files are keyed (the builder's `hash`) by this package's code *and* by the
content of the release's metadata and MIDI files and the listing of the audio folder ([`source_fingerprint`]): a
deleted clip or a relabelled row prepares afresh. Synthesized audio is keyed by the MIDI's bytes and the same
synthesis settings as the feature cache's (`poolingvq.cache_keys.synthesis_settings`), and written by the
package's atomic writer; leftovers of a killed writer are removed. MIDI files are read with the tokenizer's
hardened reader, so a file that begins with `MThd` but does not parse is reported (`not_midi`) and left out.
A malformed release (a missing or renamed CSV column, a binary CSV, a missing split file or `midis/` folder) is
one `PoolingVQInputError` that names the file and what is wrong with it.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import posixpath
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import soundfile

from ..cache_keys import file_sha256, key_of, synthesis_settings
from ..configuration_poolingvq import QUADRANT_LABELS
from ..errors_poolingvq import PoolingVQInputError
from ..files_poolingvq import ORPHANED_TEMP_FILE_SECONDS, atomic_path, remove_orphaned_temp_files
from ..tokenization_poolingvq import MIDI_SUFFIXES, parse_midi_bytes, read_midi_file

logger = logging.getLogger(__name__)

# A user's audio file for an example is named by the example's id; when one id has several, the first
# extension of this list wins (lossless before lossy) and the choice is reported.
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".mp3")
# Bumped whenever the synthesized audio would change for the same MIDI and settings in a way that
# `poolingvq.cache_keys.synthesis_settings` does not describe. 2: keyed by those settings (retuning, pedal, symusic).
SYNTHESIS_CACHE_VERSION = 2
# Written next to the prepared Arrow files, so that a builder that reuses them still knows its report.
REPORT_FILENAME = "poolingvq_source_report.json"
# The release's files whose content the prepared data depends on (metadata and MIDI): part of the builder's hash.
SOURCE_SUFFIXES: tuple[str, ...] = (".csv", ".json", ".txt", *MIDI_SUFFIXES)
EVALUATION_SPLIT_ORDER: tuple[str, ...] = ("test", "validation", "train")


def quadrant(valence_positive: bool, arousal_positive: bool) -> str:
    """Russell's quadrant of a valence/arousal sign pair: Q1 = V+A+, Q2 = V-A+, Q3 = V-A-, Q4 = V+A-."""
    if arousal_positive:
        return "Q1" if valence_positive else "Q2"
    return "Q4" if valence_positive else "Q3"


@dataclasses.dataclass(frozen=True)
class DataProblem:
    """One problem found in the source data, and what the builder did about it."""

    kind: str  # e.g. "missing_file", "label_mismatch", "duplicate_row", "not_in_split"
    item: str  # the clip, row or file it concerns
    detail: str
    action: str  # "dropped", "kept", "kept once", ...


@dataclasses.dataclass
class MusicEmotionConfig(datasets.BuilderConfig):
    """Configuration shared by the EMOPIA and VGMIDI builders.

    Attributes:
        archive_url: where the public release is downloaded from when no `data_dir` is given.
        audio_dir: a folder of the user's audio, one file per example named by its id (`<id>.wav|.flac|.mp3`).
        synthesize_audio: synthesize the audio of examples without a user file (cached on disk, keyed by
            the MIDI content and the settings below). Off: such examples get `audio_path=None`.
        audio_cache_dir: where synthesized audio is cached; default `<datasets cache>/poolingvq_synthesized_audio`.
        sample_rate, soundfont, max_seconds: the synthesis settings (soundfont None = the synthesizer's default).
        seed: seed of the random draws that make splits the release does not define.
    """

    archive_url: str | None = None
    audio_dir: str | None = None
    synthesize_audio: bool = True
    audio_cache_dir: str | None = None
    sample_rate: int = 24000
    soundfont: str | None = None
    max_seconds: float = 60.0
    seed: int = 42


@dataclasses.dataclass(frozen=True)
class SynthesisSettings:
    """Everything that changes the synthesized audio of a MIDI file; part of the cache key."""

    sample_rate: int
    soundfont: str | None
    max_seconds: float
    sustain_pedal: bool = True
    level: str = "peak"

    def cache_key(self, midi_bytes: bytes) -> str:
        """A hex digest of the MIDI content, the rate, the crop and the synthesis settings, described as the
        feature cache describes them (`poolingvq.cache_keys.synthesis_settings`: the soundfont's content, the
        retune version, the sustain pedal, symusic's version, the level): one description, so neither cache
        serves audio that today's synthesizer would render differently."""
        return key_of(
            {
                "version": SYNTHESIS_CACHE_VERSION,
                "midi_sha256": hashlib.sha256(midi_bytes).hexdigest(),
                "sample_rate": self.sample_rate,
                "max_seconds": self.max_seconds,
                "synthesis": synthesis_settings(
                    self.soundfont, sustain_pedal=self.sustain_pedal, level=self.level
                ),
            }
        )


def render_midi_audio(midi_bytes: bytes, settings: SynthesisSettings) -> np.ndarray:
    """Synthesize a MIDI file to mono float32 audio [num_samples] with the project's synthesizer."""
    # Imported here: synthesis pulls in the synthesizer's dependencies, which most uses of the builders skip.
    from ..synthesis_poolingvq import synthesize_midi

    return synthesize_midi(
        midi_bytes,
        sample_rate=settings.sample_rate,
        soundfont=settings.soundfont,
        max_seconds=settings.max_seconds,
        sustain_pedal=settings.sustain_pedal,
        level=settings.level,
    )


def write_audio_atomically(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono audio [num_samples] as 16-bit FLAC with the package's atomic writer: the file appears
    complete or not at all, so a crash or a concurrent writer never leaves a truncated file in the cache."""
    with atomic_path(path, durable=False) as temporary:
        soundfile.write(temporary, np.clip(audio, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")


def remove_synthesis_leftovers(cache_dir: Path) -> int:
    """Delete what killed writers left in the synthesized-audio cache; returns how many.

    The temporary files of today's writer name their process (see `files_poolingvq`) and go as soon as it is
    gone; the `.partial` files of the earlier writer do not, and go once they are older than any write takes.
    """
    if not cache_dir.is_dir():
        return 0
    removed = remove_orphaned_temp_files(cache_dir)
    now = time.time()
    for leftover in cache_dir.glob(".*.partial"):
        try:
            if now - leftover.stat().st_mtime > ORPHANED_TEMP_FILE_SECONDS:
                leftover.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    if removed:
        logger.info(
            "synthesized audio cache %s: removed %d file(s) of interrupted writers", cache_dir, removed
        )
    return removed


def synthesized_audio_file(midi_bytes: bytes, cache_dir: Path, settings: SynthesisSettings) -> Path:
    """The cached synthesis of a MIDI file, rendered and written first if the cache does not hold it."""
    path = cache_dir / f"{settings.cache_key(midi_bytes)}.flac"
    if not path.exists():
        audio = render_midi_audio(midi_bytes, settings)
        if audio.size == 0:
            raise PoolingVQInputError(f"<{len(midi_bytes)} bytes of MIDI>", "synthesis produced no samples")
        write_audio_atomically(path, audio, settings.sample_rate)
    return path


Reporter = Callable[[str, str, str, str], None]  # (kind, item, detail, action)


def index_audio_files(audio_dir: Path, report: Reporter) -> dict[str, Path]:
    """Map each example id to the user's audio file named `<id>.<wav|flac|mp3>` in `audio_dir`."""
    if not audio_dir.is_dir():
        raise PoolingVQInputError(audio_dir, "the audio folder does not exist")
    candidates: dict[str, list[Path]] = defaultdict(list)
    for path in audio_dir.iterdir():
        if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
            candidates[path.stem].append(path)
    chosen = {}
    for example_id, paths in candidates.items():
        paths.sort(key=lambda path: AUDIO_EXTENSIONS.index(path.suffix.lower()))
        chosen[example_id] = paths[0]
        if len(paths) > 1:
            names = ", ".join(path.name for path in paths)
            report("several_audio_files", example_id, f"audio files {names}", f"kept {paths[0].name}")
    return chosen


class AudioResolver:
    """Finds the audio of each example: the user's file named by its id, else (if enabled) a cached
    synthesis of its MIDI. Examples left without audio get None, and the reason is reported."""

    def __init__(self, config: MusicEmotionConfig, default_cache_dir: Path, report: Reporter) -> None:
        self.report = report
        self.user_files = index_audio_files(Path(config.audio_dir), report) if config.audio_dir else {}
        self.expects_user_audio = config.audio_dir is not None
        self.synthesize = config.synthesize_audio
        self.cache_dir = Path(config.audio_cache_dir) if config.audio_cache_dir else default_cache_dir
        self.settings = SynthesisSettings(config.sample_rate, config.soundfont, config.max_seconds)
        if self.synthesize and config.soundfont and not Path(config.soundfont).is_file():
            raise PoolingVQInputError(config.soundfont, "no such soundfont file")
        if self.synthesize:
            remove_synthesis_leftovers(self.cache_dir)

    def audio_path(self, example_id: str, midi_bytes: bytes) -> str | None:
        user_file = self.user_files.get(example_id)
        if user_file is not None:
            return str(user_file)
        if not self.synthesize:
            if self.expects_user_audio:
                self.report(
                    "missing_audio", example_id, "no audio file named by this id", "kept without audio"
                )
            return None
        if self.expects_user_audio:
            self.report(
                "missing_audio", example_id, "no audio file named by this id", "kept, audio synthesized"
            )
        try:
            return str(synthesized_audio_file(midi_bytes, self.cache_dir, self.settings))
        except PoolingVQInputError as error:
            self.report("synthesis_failed", example_id, str(error), "kept without audio")
            return None


def find_release_root(search_root: Path, marker: str, max_depth: int = 2) -> Path:
    """The folder holding `marker` (a file the release has at its top), searched breadth-first from
    `search_root` down `max_depth` levels: users point at the release or at the folder they unzipped it in."""
    level = [search_root]
    for _ in range(max_depth + 1):
        for folder in level:
            if (folder / marker).is_file():
                return folder
        level = sorted(child for folder in level for child in folder.iterdir() if child.is_dir())
    raise PoolingVQInputError(search_root, f"no {marker} in this folder or {max_depth} levels below it")


def builder_code_hash() -> str:
    """A digest of this package's source: part of the cache path, so prepared data never outlives its code."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def source_fingerprint(release_root: Path | None, audio_dir: Path | None) -> str:
    """A digest of what a preparation reads: the content of the release's metadata and MIDI files
    (`SOURCE_SUFFIXES`, hidden folders left out) and the names, sizes and times of the audio folder's files.

    Part of the builder's cache path, so a release whose files were deleted, added or relabelled in place is
    prepared afresh instead of being served from the cache. Hashing EMOPIA's 1,078 clips takes a fraction of a
    second.
    """
    digest = hashlib.sha256()
    if release_root is not None:
        for path in sorted(release_root.rglob("*")):
            relative = path.relative_to(release_root)
            if any(part.startswith(".") for part in relative.parts):
                continue
            if path.suffix.lower() in SOURCE_SUFFIXES and path.is_file():
                digest.update(f"{relative.as_posix()}\0{file_sha256(path)}\n".encode())
    if audio_dir is not None and audio_dir.is_dir():
        for path in sorted(audio_dir.iterdir()):
            if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file():
                stat = path.stat()
                digest.update(f"audio/{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def read_csv_rows(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of one of the release's CSV files, as dicts (a missing value is "").

    One clear error instead of a traceback for a malformed release: a missing file, one that is not UTF-8 text
    (a binary file saved under the CSV's name), or a header without one of `columns` (a renamed column) is a
    `PoolingVQInputError` naming the file and what is wrong.
    """
    if not path.is_file():
        raise PoolingVQInputError(path, "is missing: the release's split and label files are all needed")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [column for column in columns if column not in header]
            if missing:
                found = ", ".join(repr(name) for name in header) if header else "no header at all"
                raise PoolingVQInputError(
                    path, f"has no column {', '.join(map(repr, missing))} (its header: {found})"
                )
            return [{key: value or "" for key, value in row.items() if key is not None} for row in reader]
    except UnicodeDecodeError as error:
        raise PoolingVQInputError(
            path, f"is not a text CSV file (byte {error.start} is not UTF-8: is it a binary file?)"
        ) from error
    except csv.Error as error:
        raise PoolingVQInputError(path, f"is not a readable CSV file ({error})") from error


def format_report(problems: list[DataProblem], stats: dict[str, Any]) -> str:
    """The problems and statistics as text, for the dataset description and card."""
    lines = [f"- {key}: {json.dumps(value)}" for key, value in stats.items()]
    lines.append(f"Reported problems ({len(problems)}):" if problems else "Reported problems: none.")
    lines += [f"- [{p.kind}] {p.item}: {p.detail} -> {p.action}" for p in problems]
    return "\n".join(lines)


class MusicEmotionBuilder(datasets.GeneratorBasedBuilder):
    """Base of the EMOPIA and VGMIDI builders: one example per MIDI clip, labelled with a quadrant Q1..Q4.

    Subclasses define `EXTRA_FEATURES`, the metadata class attributes and `_read_splits`, which reads the
    release into `{split: [row]}`, each row a dict with `id`, `label` ("Q1".."Q4"), `midi_path` (Path),
    `midi_file` (its path inside the release) and the extra features. They report problems with `_report`
    and drop unusable files with `_keep_midi_files`.
    """

    BUILDER_CONFIG_CLASS = MusicEmotionConfig
    VERSION = datasets.Version("1.0.0")
    DESCRIPTION = ""
    HOMEPAGE = ""
    LICENSE = ""
    CITATION = ""
    # The file at the top of the release, used to find it inside a user's folder or a downloaded archive.
    RELEASE_MARKER = ""
    EXTRA_FEATURES: dict[str, Any] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "hash" not in kwargs:
            kwargs["hash"] = key_of(
                {"code": builder_code_hash(), "source": self._source_fingerprint(kwargs)}
            )[:16]
        super().__init__(*args, **kwargs)
        if self.config.sample_rate <= 0 or self.config.max_seconds <= 0:
            raise PoolingVQInputError(
                "builder config",
                f"sample_rate and max_seconds must be positive, got {self.config.sample_rate} "
                f"and {self.config.max_seconds}",
            )
        self._problems: list[DataProblem] | None = None
        self._stats: dict[str, Any] = {}

    # -- the report -------------------------------------------------------------------------------------------

    @property
    def problems(self) -> list[DataProblem]:
        """The problems found in the source data, each with the action taken (after `download_and_prepare`)."""
        if self._problems is None:
            raise RuntimeError("call download_and_prepare() first: the problems are found while preparing")
        return list(self._problems)

    @property
    def stats(self) -> dict[str, Any]:
        """Facts about the source found while preparing, e.g. songs that appear in several splits."""
        if self._problems is None:
            raise RuntimeError(
                "call download_and_prepare() first: the statistics are computed while preparing"
            )
        return dict(self._stats)

    def _report(self, kind: str, item: str, detail: str, action: str) -> None:
        self._problems.append(DataProblem(kind, item, detail, action))

    def _log_problems(self) -> None:
        by_kind: dict[str, list[DataProblem]] = defaultdict(list)
        for problem in self._problems:
            by_kind[problem.kind].append(problem)
        source = f"{self.dataset_name}/{self.config.name}"
        for kind, problems in by_kind.items():
            examples = "; ".join(f"{p.item}: {p.detail} -> {p.action}" for p in problems[:3])
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            logger.warning(f"{source}: {len(problems)} x {kind}: {examples}{more}. See builder.problems.")

    # -- datasets.GeneratorBasedBuilder -----------------------------------------------------------------------

    def _info(self) -> datasets.DatasetInfo:
        features = datasets.Features(
            {
                "id": datasets.Value("string"),
                "label": datasets.ClassLabel(names=list(QUADRANT_LABELS)),
                "midi_file": datasets.Value("string"),  # path inside the release, e.g. "midis/Q1_x_0.mid"
                "midi_path": datasets.Value("string"),  # absolute path on this machine
                "audio_path": datasets.Value("string"),  # None when the example has no audio
                "midi": datasets.Value("binary"),  # the MIDI file's bytes, so exported data stands alone
                **self.EXTRA_FEATURES,
            }
        )
        return datasets.DatasetInfo(
            description=self.DESCRIPTION,
            features=features,
            homepage=self.HOMEPAGE,
            license=self.LICENSE,
            citation=self.CITATION,
        )

    def download_and_prepare(self, *args: Any, **kwargs: Any) -> None:
        super().download_and_prepare(*args, **kwargs)
        if self._problems is None:  # the prepared data was reused: so is the report written with it
            self._load_report()

    def _download_and_prepare(self, dl_manager: datasets.DownloadManager, *args: Any, **kwargs: Any) -> None:
        self._problems, self._stats = [], {}
        super()._download_and_prepare(dl_manager, *args, **kwargs)
        self._log_problems()
        self.info.description = f"{self.DESCRIPTION}\n\n{format_report(self._problems, self._stats)}"
        report = {"problems": [dataclasses.asdict(p) for p in self._problems], "stats": self._stats}
        with self._fs.open(posixpath.join(self._output_dir, REPORT_FILENAME), "w") as handle:
            json.dump(report, handle, indent=1)

    def _load_report(self) -> None:
        path = posixpath.join(self._output_dir, REPORT_FILENAME)
        if not self._fs.exists(path):
            raise RuntimeError(f"{path} is missing: prepare again with download_mode='force_redownload'")
        with self._fs.open(path) as handle:
            report = json.load(handle)
        self._problems = [DataProblem(**problem) for problem in report["problems"]]
        self._stats = report["stats"]

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        release_root = self._release_root(dl_manager)
        splits = self._read_splits(release_root, dl_manager)
        self._stats["examples_per_split"] = {split: len(rows) for split, rows in splits.items()}
        self._audio = AudioResolver(
            self.config, Path(self._cache_dir_root) / "poolingvq_synthesized_audio", self._report
        )
        # Rows as a tuple, not a list: datasets would shard a list over `num_proc` worker processes, whose
        # reports of audio problems would be lost.
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"rows": tuple(rows)})
            for split, rows in splits.items()
        ]

    def _generate_examples(self, rows: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
        for row in rows:
            midi_bytes = row["midi_path"].read_bytes()
            example = {**row, "midi_path": str(row["midi_path"]), "midi": midi_bytes}
            example["audio_path"] = self._audio.audio_path(row["id"], midi_bytes)
            yield row["id"], example

    # -- helpers for subclasses ------------------------------------------------------------------------------

    def _read_splits(
        self, release_root: Path, dl_manager: datasets.DownloadManager
    ) -> dict[str, list[dict[str, Any]]]:
        """Each subclass reads its own split files (EMOPIA's CSVs, VGMIDI's lists): split name -> rows."""
        raise NotImplementedError(f"{type(self).__name__} must read its split files")

    def _release_root(self, dl_manager: datasets.DownloadManager) -> Path:
        """The release's top folder: inside the user's `data_dir`, else inside the downloaded archive."""
        if self.config.data_dir:
            data_dir = Path(self.config.data_dir).expanduser()
            if not data_dir.is_dir():
                raise PoolingVQInputError(data_dir, "the data folder does not exist")
            return find_release_root(data_dir.resolve(), self._release_marker())
        if not self.config.archive_url:
            raise PoolingVQInputError("builder config", "give a data_dir, or an archive_url to download from")
        extracted = Path(dl_manager.download_and_extract(self.config.archive_url))
        return find_release_root(extracted, self._release_marker())

    def _release_marker(self) -> str:
        """A file at the top of this config's release, to find the release in a folder or archive."""
        return self.release_marker_of(self.config.name)

    @classmethod
    def release_marker_of(cls, config_name: str) -> str:
        """The release marker of the config named `config_name` (before the builder, hence its config, exists)."""
        return cls.RELEASE_MARKER

    @classmethod
    def _source_fingerprint(cls, builder_kwargs: dict[str, Any]) -> str:
        """[`source_fingerprint`] of the release in the user's `data_dir` and of `audio_dir`, from the builder's
        keyword arguments; a folder without the release is fingerprinted empty (preparing then says what is
        missing). A downloaded release is pinned by its URL, which the config (hence the cache path) holds."""
        config_name = builder_kwargs.get("config_name") or cls.DEFAULT_CONFIG_NAME
        release_root = None
        data_dir = builder_kwargs.get("data_dir")
        if data_dir and Path(data_dir).expanduser().is_dir():
            try:
                release_root = find_release_root(
                    Path(data_dir).expanduser().resolve(), cls.release_marker_of(config_name)
                )
            except (PoolingVQInputError, OSError):
                release_root = None
        audio_dir = builder_kwargs.get("audio_dir")
        return source_fingerprint(release_root, Path(audio_dir).expanduser() if audio_dir else None)

    def _keep_midi_files(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows whose MIDI file exists and reads as MIDI; the others are reported and dropped.

        Each file is read and parsed with the tokenizer's hardened reader (size cap, chunk walk, then symusic), so
        a file that only begins with `MThd` is caught here, not by training. When not one listed file is usable
        the release itself is broken (e.g. its MIDI folder is missing): that is an error, not a report.
        """
        kept = []
        for row in rows:
            path: Path = row["midi_path"]
            if not path.is_file():
                self._report("missing_file", row["id"], f"{row['midi_file']} does not exist", "dropped")
                continue
            try:
                parse_midi_bytes(read_midi_file(path), source=row["midi_file"])
            except PoolingVQInputError as error:
                self._report("not_midi", row["id"], str(error), "dropped")
                continue
            kept.append(row)
        if rows and not kept:
            first = rows[0]["midi_file"]
            raise PoolingVQInputError(
                rows[0]["midi_path"].parent,
                f"none of the {len(rows)} MIDI files listed is there and readable (the first: {first}): is "
                "this the release's folder, with its MIDI files?",
            )
        return kept

    def _keep_each_id_once(self, splits: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        """A row repeated within a split is kept once (the first one); an id listed in several splits is kept
        only in the evaluation split (test, then validation): the official test set stays whole, nothing leaks."""
        first_rows: dict[str, tuple[str, dict[str, Any]]] = {}  # id -> (split, row) of the row kept
        for split in sorted(splits, key=EVALUATION_SPLIT_ORDER.index):
            unique = []
            for row in splits[split]:
                kept_split, kept_row = first_rows.setdefault(row["id"], (split, row))
                if kept_row is row:
                    unique.append(row)
                elif kept_split != split:
                    self._report(
                        "in_several_splits",
                        row["id"],
                        f"in {kept_split} and {split}",
                        f"kept in {kept_split}",
                    )
                else:
                    labels = (
                        f"as {kept_row['label']} and as {row['label']}"
                        if kept_row["label"] != row["label"]
                        else ""
                    )
                    detail = " ".join(filter(None, [f"listed twice in {split}", labels]))
                    self._report("duplicate_row", row["id"], detail, f"kept once, as {kept_row['label']}")
            splits[split] = unique
        return splits
