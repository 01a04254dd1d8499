"""`poolingvq train --dataset-path DIR_OR_REPO_ID`: the clips of a prepared dataset instead of a raw release.

What it reads is `poolingvq prepare-dataset`'s output, or the same pushed to the Hub (a dataset repo, resolved
by `hub.resolve_model_dir` with `repo_type="dataset"`: huggingface_hub's cache, offline mode and revisions):

- a `DatasetDict.save_to_disk` folder (`DIR/dataset_dict/`, or `DIR` itself): `datasets.load_from_disk`;
- otherwise the Parquet files and card (`DIR/data/<config>/<split>-*.parquet`, `DIR/README.md`):
  `datasets.load_dataset(DIR, <config>)`.

The splits (`train`, `validation`, `test`) and the labels are the dataset's. Its recordings are an `audio` column
of `datasets.Audio(decode=False)`: undecoded, since `datasets`' own decoding needs torchcodec, which this package
does without; the project's front end (`feature_extraction_poolingvq.load_audio`: soundfile + soxr) decodes them.
A clip whose `audio` is None, or a dataset without the column, has its MIDI synthesized as for a raw release.

The feature cache keys a clip by the content of its MIDI and audio *files* (`features.clip_key`: their SHA-256).
MIDI and audio stored as bytes in the dataset are therefore written once to a content-addressed folder
(`<feature cache>/dataset_files/<sha[:2]>/<sha256><suffix>`) and the clips point there: a file's name is the hash
of its bytes, so a clip from a prepared dataset gets exactly the key the same clip gets from the raw release, and
the two share cache entries.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .arguments import DATASETS
from .configuration_poolingvq import QUADRANT_LABELS
from .errors_poolingvq import PoolingVQInputError
from .files_poolingvq import atomic_write_bytes, remove_orphaned_temp_files, sha256_file
from .hub import is_local, resolve_model_dir

logger = logging.getLogger("poolingvq.training")

#: The splits a run needs, named as `prepare-dataset` names them.
SPLITS = ("train", "validation", "test")
#: The folder, inside the feature cache, where the dataset's MIDI and audio bytes become files.
FILES_FOLDER = "dataset_files"
#: Audio file suffixes kept on the files written from bytes (libsndfile reads the format from the header anyway).
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff", ".aif")


def check_dataset_arguments(dataset_path: str | None, data_dir: str | None, audio_dir: str | None) -> None:
    """`--dataset-path` replaces the raw release and its audio folder: given together, one of them would be
    silently ignored, so the combination is refused in one line."""
    if dataset_path is None:
        return
    for flag, value in (("--data-dir", data_dir), ("--audio-dir", audio_dir)):
        if value is not None:
            raise PoolingVQInputError(
                flag,
                f"cannot go with --dataset-path, which holds the clips, splits and recordings already (prepare the "
                f"dataset with prepare-dataset {flag} instead)",
            )


def load_prepared_clips(
    dataset_path: str,
    *,
    revision: str | None,
    dataset: str,
    config: str,
    files_dir: str | os.PathLike,
) -> dict[str, list[dict[str, Any]]]:
    """The clips `{"id", "midi_path", "audio_path", "label"}` of each split of the prepared dataset at
    `dataset_path` (a folder, or a Hub dataset repo id at `revision`), its bytes written under `files_dir`.

    `dataset` and `config` are the run's `--dataset` and `--config`: the model card and metrics name the data by
    them, so a prepared dataset that says it is another one (its saved builder name or config, or Parquet configs
    without `config`) is refused rather than mislabelled.
    """
    flag = f"--dataset-path {dataset_path}"
    folder = resolve_model_dir(dataset_path, revision, flag="--dataset-path", repo_type="dataset")
    if not folder.is_dir():
        raise PoolingVQInputError(
            flag, "is a file: give prepare-dataset's --out folder or a Hub dataset repo id"
        )
    splits = load_prepared_dataset(folder, dataset=dataset, config=config, source=flag)
    files_root = Path(files_dir)
    files_root.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temp_files(files_root, "??/*")  # what killed runs left half-written
    where = dataset_path if not is_local(dataset_path) else str(folder)
    clips = {name: split_clips(splits[name], files_root, folder, f"{where} [{name}]") for name in SPLITS}
    recordings = sum(clip["audio_path"] is not None for split in clips.values() for clip in split)
    total = sum(len(split) for split in clips.values())
    logger.info(
        "prepared dataset %s: %s; %d of %d clips with a recording (the others synthesized from their MIDI)",
        where,
        ", ".join(f"{name} {len(clips[name])}" for name in SPLITS),
        recordings,
        total,
    )
    return clips


def load_prepared_dataset(folder: Path, *, dataset: str, config: str, source: str) -> Mapping[str, Any]:
    """The `DatasetDict` in `folder`: a `save_to_disk` folder (the folder itself or its `dataset_dict/`), else
    the Parquet files and card that `datasets.load_dataset(folder, config)` reads."""
    import datasets

    for saved in (folder, folder / "dataset_dict"):
        if (saved / "dataset_dict.json").is_file():
            loaded = datasets.load_from_disk(str(saved))
            check_saved_identity(loaded, dataset=dataset, config=config, source=source)
            return check_splits(loaded, source)
    try:
        configs = datasets.get_dataset_config_names(str(folder))
    except Exception as error:  # datasets raises many kinds for a folder it cannot read
        raise PoolingVQInputError(source, f"not a dataset datasets can load ({_first_line(error)})") from None
    if config in configs:
        name = config
    elif configs == ["default"]:  # Parquet files without a card naming configs: taken as --config's split
        name = None
    else:
        raise PoolingVQInputError(
            source,
            f"has no config {config!r} (its configs: {', '.join(configs)}): give --config the one to train on",
        )
    try:
        loaded = datasets.load_dataset(str(folder), name)
    except Exception as error:
        raise PoolingVQInputError(source, f"could not be loaded ({_first_line(error)})") from None
    return check_splits(loaded, source)


def check_saved_identity(loaded: Any, *, dataset: str, config: str, source: str) -> None:
    """A `save_to_disk` folder written by `prepare-dataset` names its data set and config (the builder's name and
    config): refuse one that is not `--dataset`'s `--config`, whose card would otherwise name the wrong data."""
    first = next(iter(loaded.values()), None)
    info = getattr(first, "info", None)
    if info is None or info.builder_name not in DATASETS:
        return  # saved by something else: nothing to check it against
    if info.builder_name != dataset:
        raise PoolingVQInputError(
            source, f"holds {info.builder_name}, not {dataset}: pass --dataset {info.builder_name}"
        )
    if info.config_name and info.config_name != config:
        raise PoolingVQInputError(
            source, f"holds the {info.config_name!r} split, not {config!r}: pass --config {info.config_name}"
        )


def check_splits(loaded: Any, source: str) -> Mapping[str, Any]:
    """`loaded` when it has the three splits a run needs, with a label and MIDI column each."""
    missing = [name for name in SPLITS if name not in loaded]
    if missing:
        raise PoolingVQInputError(
            source,
            f"has no {', '.join(missing)} split (its splits: {', '.join(loaded) or 'none'}); training needs "
            f"{', '.join(SPLITS)}",
        )
    for name in SPLITS:
        columns = loaded[name].column_names
        if "label" not in columns or not ({"midi", "midi_path"} & set(columns)):
            raise PoolingVQInputError(
                source, f"its {name} split has no label or no midi column (its columns: {', '.join(columns)})"
            )
    return loaded


def split_clips(data: Any, files_root: Path, folder: Path, where: str) -> list[dict[str, Any]]:
    """The clips of one split: labels as class indices (Q1..Q4), MIDI and audio as files the cache can hash."""
    import datasets

    label_of = label_reader(data.features["label"], where)
    audio_feature = data.features.get("audio")
    if isinstance(audio_feature, datasets.Audio) and audio_feature.decode:
        data = data.cast_column("audio", datasets.Audio(decode=False))  # bytes and path, not decoded samples
    elif audio_feature is None and "audio_path" in data.column_names:
        logger.warning(
            "%s: no audio column (prepared before recordings were one): every clip's audio is synthesized; "
            "prepare it again with --audio-dir to train on recordings",
            where,
        )
    wanted = [
        column for column in ("id", "label", "midi", "midi_path", "audio") if column in data.column_names
    ]
    clips = []
    for index, row in enumerate(data.select_columns(wanted)):
        clip_id = row.get("id") or f"{index}"
        source = f"{where} clip {clip_id}"
        if row.get("midi") is not None:
            midi_path = content_file(files_root, row["midi"], ".mid")
        elif row.get("midi_path") and Path(row["midi_path"]).is_file():
            midi_path = Path(row["midi_path"])
        else:
            raise PoolingVQInputError(source, "has neither MIDI bytes nor a MIDI file on this machine")
        clips.append(
            {
                "id": clip_id,
                "midi_path": str(midi_path),
                "audio_path": audio_file(row.get("audio"), files_root, folder, source),
                "label": label_of(row["label"]),
            }
        )
    return clips


def label_reader(feature: Any, where: str) -> Any:
    """How to turn this dataset's labels into class indices of `QUADRANT_LABELS`: a `ClassLabel` with exactly
    those names is used as it is; string labels are looked up by name. Anything else is refused, since a class
    index under other names would train the model on the wrong quadrants."""
    import datasets

    names = list(QUADRANT_LABELS)
    if isinstance(feature, datasets.ClassLabel):
        if list(feature.names) != names:
            raise PoolingVQInputError(
                where, f"its labels are {', '.join(feature.names)}, not the quadrants {', '.join(names)}"
            )
        return int
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):

        def by_name(label: str) -> int:
            if label not in names:
                raise PoolingVQInputError(where, f"label {label!r} is not one of {', '.join(names)}")
            return names.index(label)

        return by_name
    raise PoolingVQInputError(where, f"its label column is {feature}, not a ClassLabel of {', '.join(names)}")


def audio_file(value: Mapping[str, Any] | None, files_root: Path, folder: Path, source: str) -> str | None:
    """The file of an undecoded `Audio` value: its bytes written to the content-addressed folder, or the file its
    path names (relative to the dataset's folder); None when the clip has no recording."""
    if value is None:
        return None
    path = value.get("path")
    if value.get("bytes"):
        suffix = Path(path).suffix.lower() if path else ""
        return str(content_file(files_root, value["bytes"], suffix if suffix in AUDIO_SUFFIXES else ""))
    if path:
        candidate = Path(path) if Path(path).is_absolute() else folder / path
        if candidate.is_file():
            return str(candidate)
    raise PoolingVQInputError(source, f"its audio has no bytes and its file {path!r} is not on this machine")


def content_file(root: Path, data: bytes, suffix: str) -> Path:
    """`data` as the file `root/<sha[:2]>/<sha256><suffix>`, written (atomically) unless an intact one is there:
    named by its content, so the feature cache's key of the file is the key of the bytes wherever they came from."""
    digest = hashlib.sha256(data).hexdigest()
    path = root / digest[:2] / f"{digest}{suffix}"
    try:
        if path.stat().st_size == len(data) and sha256_file(path) == digest:
            return path
    except FileNotFoundError:
        pass
    return atomic_write_bytes(path, bytes(data), durable=False)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


__all__ = ["check_dataset_arguments", "content_file", "load_prepared_clips"]
