"""`poolingvq prepare-dataset emopia|vgmidi`: build a dataset with its official splits and write it out, ready
for training (a `DatasetDict` on disk) and for the Hugging Face Hub (Parquet files and a dataset card).

What `--out DIR` receives:

    DIR/dataset_dict/                              DatasetDict.save_to_disk: reload with load_from_disk
    DIR/data/<config>/<split>-00000-of-00001.parquet   one file per split, without this machine's paths
    DIR/README.md                                  the dataset card (YAML metadata + description)

Push to the Hub with `hf upload <user>/<repo> DIR . --repo-type dataset --exclude "dataset_dict/*"`.
`poolingvq train --dataset-path DIR` (or the Hub repo's id) trains on it: its splits, its labels, its recordings.

The user's own recordings (`--audio-dir`) are an `audio` column of `datasets.Audio(decode=False)`, the file's
bytes embedded (in `dataset_dict/` and in the Parquet files alike), so the dataset stands alone on another machine
and `datasets` never needs an audio decoder to load it. Synthesized audio is not put there: it is the MIDI's,
rendered again (and cached) by whoever trains, with their soundfont; those clips' `audio` is None. Only the local
`audio_path` column (`dataset_dict/` only) points at the synthesized files.

`DIR` is written whole or not at all: everything is built in a temporary sibling folder, then swapped in for the
old `DIR` (`files_poolingvq.atomic_directory`), so a run killed mid-write leaves an earlier output intact and
`load_from_disk` never meets a half-written one. `DIR` must be new, empty, or an earlier output of this command
(other files there would be lost with the swap).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
from huggingface_hub import DatasetCard, DatasetCardData

from ..arguments import add_prepare_dataset_arguments  # noqa: F401  (its flags, defined without datasets)
from ..errors_poolingvq import PoolingVQInputError
from ..files_poolingvq import atomic_directory, remove_orphaned_temp_files
from .common import MusicEmotionBuilder, format_report
from .emopia import EmopiaBuilder
from .vgmidi import VgmidiBuilder

DATASET_BUILDERS: dict[str, type[MusicEmotionBuilder]] = {"emopia": EmopiaBuilder, "vgmidi": VgmidiBuilder}
PRETTY_NAMES = {"emopia": "EMOPIA", "vgmidi": "VGMIDI"}
# Absolute paths on the machine that prepared the data: meaningless on the Hub, so left out of the Parquet files.
LOCAL_COLUMNS = ("midi_path", "audio_path")
# What `--out` holds after a run: an existing folder holding anything else is not replaced.
OUTPUT_ENTRIES = frozenset({"dataset_dict", "data", "README.md"})
# The recordings' column: a recording's bytes and file name ({"bytes", "path"}), None for a clip without one.
AUDIO_COLUMN = "audio"
# Rows held in memory while the recordings are read into the Arrow files (a minute of WAV is ~3 MB).
AUDIO_WRITER_BATCH_SIZE = 16


def prepare_dataset_command(args: argparse.Namespace) -> int:
    """Prepare `args.dataset` with config `args.config` and write it to `args.out` (see the module docstring)."""
    options = vars(args)
    out = check_out_folder(Path(options["out"]))
    builder = make_builder(
        options["dataset"],
        options.get("config"),
        data_dir=options.get("data_dir"),
        audio_dir=options.get("audio_dir"),
        synthesize_audio=not options.get("no_synthesize", False),
        soundfont=options.get("soundfont"),
        sample_rate=options.get("sample_rate"),
        max_seconds=options.get("max_seconds"),
        seed=options.get("seed"),
        cache_dir=options.get("cache_dir"),
    )
    builder.download_and_prepare()
    dataset_dict = with_recordings(builder.as_dataset(), options.get("audio_dir"))

    config_name = builder.config.name
    remove_orphaned_temp_files(out.parent, out.name)  # what killed runs left beside `out`
    with atomic_directory(out) as building:
        dataset_dict.save_to_disk(str(building / "dataset_dict"))
        for split, dataset in dataset_dict.items():
            parquet_path = building / "data" / config_name / f"{split}-00000-of-00001.parquet"
            parquet_path.parent.mkdir(parents=True, exist_ok=True)
            dataset.remove_columns(list(LOCAL_COLUMNS)).to_parquet(str(parquet_path))
        dataset_card(options["dataset"], builder, dataset_dict).save(building / "README.md")

    sizes = ", ".join(f"{split} {len(dataset)}" for split, dataset in dataset_dict.items())
    print(
        f"{PRETTY_NAMES[options['dataset']]}/{config_name}: {sizes}; {len(builder.problems)} problems reported"
    )
    print(f"wrote {out}/dataset_dict, {out}/data/{config_name}/*.parquet and {out}/README.md")
    return 0


def check_out_folder(out: Path) -> Path:
    """`--out`, refused in one line (before any work) when it cannot be replaced whole: a file, or a folder
    holding anything besides an earlier output of this command."""
    if out.exists() and not out.is_dir():
        raise PoolingVQInputError("--out", f"{out} is a file: give a folder to write the dataset to")
    if out.is_dir():
        others = sorted(entry.name for entry in out.iterdir() if entry.name not in OUTPUT_ENTRIES)
        if others:
            listed = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            raise PoolingVQInputError(
                "--out",
                f"{out} holds other files ({listed}), which replacing it would delete: give a new or empty "
                "folder, or an earlier output of prepare-dataset",
            )
    if out.parent.exists() and not out.parent.is_dir():
        raise PoolingVQInputError("--out", f"{out.parent} is a file, not a folder")
    return out


def with_recordings(dataset_dict: datasets.DatasetDict, audio_dir: str | None) -> datasets.DatasetDict:
    """`dataset_dict` with the `audio` column: each clip's recording from `audio_dir` (its bytes and file name) as
    `datasets.Audio(decode=False)`, None for clips whose audio is synthesized or absent.

    A clip's `audio_path` is a recording when it lies in `audio_dir` (the builder takes `<audio_dir>/<id>.<ext>`);
    otherwise it is the synthesis cache's file, or None. The column is built as Arrow's {bytes, path} struct and
    then cast to `Audio`: `Audio.encode_example` wants torchcodec even for bytes, which this package does not need.
    """
    audio_root = Path(audio_dir).expanduser().resolve() if audio_dir else None

    def recordings(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        values = []
        for path in batch["audio_path"]:
            is_recording = (
                audio_root is not None and path is not None and Path(path).resolve().parent == audio_root
            )
            values.append(
                {"bytes": Path(path).read_bytes(), "path": Path(path).name} if is_recording else None
            )
        return {AUDIO_COLUMN: values}

    struct = datasets.Features({"bytes": datasets.Value("binary"), "path": datasets.Value("string")})
    prepared = {}
    for split, dataset in dataset_dict.items():
        features = datasets.Features({**dataset.features, AUDIO_COLUMN: struct})
        with_struct = dataset.map(
            recordings,
            batched=True,
            batch_size=AUDIO_WRITER_BATCH_SIZE,
            writer_batch_size=AUDIO_WRITER_BATCH_SIZE,
            features=features,
            desc=f"recordings ({split})",
        )
        prepared[split] = with_struct.cast_column(AUDIO_COLUMN, datasets.Audio(decode=False))
    return datasets.DatasetDict(prepared)


def make_builder(dataset: str, config_name: str | None, **config_kwargs: Any) -> MusicEmotionBuilder:
    """The builder of `dataset` with `config_name` (None = its default); None-valued options keep defaults."""
    builder_class = DATASET_BUILDERS[dataset]
    if config_name is not None and config_name not in builder_class.builder_configs:
        choices = ", ".join(builder_class.builder_configs)
        raise PoolingVQInputError(
            "--config", f"{dataset} has no config {config_name!r}; choose one of {choices}"
        )
    kwargs = {key: value for key, value in config_kwargs.items() if value is not None}
    return builder_class(config_name=config_name, **kwargs)


#: What a clip is to training and evaluation: its id, its files (a local path each) and its label index.
CLIP_FIELDS: tuple[str, ...] = ("id", "midi_path", "audio_path", "label")


def split_clips(
    dataset: str, config_name: str | None = None, *, data_dir: str | None = None, audio_dir: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The official split of `dataset` as clips `{"id", "midi_path", "audio_path", "label"}` per split name, read
    from the raw release by its builder (so every rule of the builder holds: reported problems, one split per id).

    No audio is synthesized here: whoever encodes the clips synthesizes, and its own cache key says how.

        clips = split_clips("emopia", "paper", data_dir="../shared/data/emopia")
        clips["test"][0]  # {"id": "Q1_...", "midi_path": ".../Q1_....mid", "audio_path": None, "label": 0}
    """
    builder = make_builder(
        dataset, config_name, data_dir=data_dir, audio_dir=audio_dir, synthesize_audio=False
    )
    builder.download_and_prepare()
    splits = builder.as_dataset()
    return {name: data.select_columns(list(CLIP_FIELDS)).to_list() for name, data in splits.items()}


def dataset_card(
    dataset: str, builder: MusicEmotionBuilder, dataset_dict: datasets.DatasetDict
) -> DatasetCard:
    """The Hub dataset card: YAML metadata (config, data files, licence, task) and a description with the
    split sizes, the per-quadrant counts, the problems reported while preparing and the citation."""
    config_name = builder.config.name
    label_names = dataset_dict[next(iter(dataset_dict))].features["label"].names
    total = sum(len(split) for split in dataset_dict.values())
    recordings = sum(  # counted in Arrow: reading the column would load every recording's bytes
        len(split) - split.data.column(AUDIO_COLUMN).null_count
        for split in dataset_dict.values()
        if AUDIO_COLUMN in split.column_names
    )
    card_data = DatasetCardData(
        pretty_name=f"{PRETTY_NAMES[dataset]} ({config_name} split)",
        license=builder.info.license,
        task_categories=["audio-classification"],
        tags=["music", "midi", "emotion-recognition", "valence-arousal", "poolingvq"],
        size_categories=["n<1K" if total < 1000 else "1K<n<10K"],
        configs=[
            {
                "config_name": config_name,
                "data_files": [
                    {"split": split, "path": f"data/{config_name}/{split}-*.parquet"}
                    for split in dataset_dict
                ],
            }
        ],
    )
    header = "| split | clips | " + " | ".join(label_names) + " |"
    rows = [header, "|" + "---|" * (len(label_names) + 2)]
    for split, data in dataset_dict.items():
        counts = Counter(data["label"])
        rows.append(
            f"| {split} | {len(data)} | " + " | ".join(str(counts[i]) for i in range(len(label_names))) + " |"
        )
    body = f"""
# {PRETTY_NAMES[dataset]}, `{config_name}` split

{builder.DESCRIPTION}

Split `{config_name}`: {builder.config.description}

## Splits and classes

{chr(10).join(rows)}

Classes are the quadrants of Russell's valence-arousal plane: Q1 = valence+ arousal+, Q2 = valence- arousal+,
Q3 = valence- arousal-, Q4 = valence+ arousal-.

## Columns

- `id`: the clip's name in the release; `label`: its quadrant (class 0..3 = Q1..Q4);
- `midi_file`: the MIDI file's path inside the release; `midi`: the MIDI file's bytes;
- `audio`: the clip's recording (`Audio(decode=False)`: the file's bytes and name), when it was prepared with
  `--audio-dir`; None otherwise ({recordings} of {total} clips have one);
- {", ".join(f"`{name}`" for name in builder.EXTRA_FEATURES)}: metadata of the release.

Synthesized audio is not included: synthesize it from `midi` (`poolingvq train` and `prepare-dataset` do, with
a cache). Train on this dataset with `poolingvq train --dataset-path <this folder or repo id>`: its splits, its
labels, its recordings, and the MIDI of the clips without one synthesized.

## Reported problems in the source data

Prepared with `poolingvq prepare-dataset {dataset} --config {config_name}`. Found while preparing, and what was
done about each:

{format_report(builder.problems, builder.stats)}

## Source and citation

{builder.HOMEPAGE}

```bibtex
{builder.CITATION.strip()}
```
"""
    return DatasetCard(f"---\n{card_data.to_yaml()}\n---\n{body}")
