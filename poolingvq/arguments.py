"""Command-line flags from a dataclass of arguments, and the dataclass back from the parsed flags; the flags of
the subcommands whose code is heavy.

`poolingvq train`, `experiment` and `pretrain-midi` keep their settings in dataclasses (the paper's values as
defaults, help in each field's metadata); this turns each field into one typed `--flag`. The dataclasses live
beside the code that uses them, which imports torch: `poolingvq train --help` reads the dataclass from that file's
source instead (`source_field_specs`), so that building any parser imports nothing but the standard library.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: The data sets `prepare-dataset`, `train` and `experiment` know (poolingvq.data.prepare.DATASET_BUILDERS).
DATASETS = ("emopia", "vgmidi")
#: The codebook sizes P of the paper's sweep (its Fig. 4).
CODEBOOK_SIZES = (8, 16, 32, 64, 128, 256)


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """What a flag needs from one dataclass field: its name, annotation as written, default and metadata."""

    name: str
    type: str
    default: Any
    metadata: Mapping[str, Any]


def dataclass_field_specs(cls: type) -> list[FieldSpec]:
    """The fields of an imported dataclass."""
    return [
        FieldSpec(
            spec.name,
            spec.type if isinstance(spec.type, str) else getattr(spec.type, "__name__", str(spec.type)),
            spec.default,
            spec.metadata,
        )
        for spec in dataclasses.fields(cls)
    ]


def source_field_specs(path: str | Path, class_name: str) -> list[FieldSpec]:
    """The fields of dataclass `class_name` as written in the Python file `path`, read without importing it.

    Each default (and `field(default=..., metadata=...)`) must be a literal; anything else raises a TypeError,
    which the CLI's tests would catch (they compare these flags with those of the imported class).
    """
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    node = next(
        (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name),
        None,
    )
    if node is None:
        raise TypeError(f"{path} defines no class {class_name}")
    specs = []
    for statement in node.body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        annotation = ast.unparse(statement.annotation)
        if annotation.startswith(("ClassVar", "typing.ClassVar")):
            continue
        default, metadata = _literal_default(statement.value, f"{class_name}.{statement.target.id}")
        specs.append(FieldSpec(statement.target.id, annotation, default, metadata))
    return specs


def _literal_default(value: ast.expr | None, where: str) -> tuple[Any, Mapping[str, Any]]:
    if value is None:
        return dataclasses.MISSING, {}
    is_field = isinstance(value, ast.Call) and ast.unparse(value.func) in ("field", "dataclasses.field")
    try:
        if not is_field:
            return ast.literal_eval(value), {}
        keywords = {keyword.arg: keyword.value for keyword in value.keywords}
        if set(keywords) - {"default", "metadata"} or value.args:
            raise ValueError(f"field({', '.join(map(str, keywords))})")
        default = ast.literal_eval(keywords["default"]) if "default" in keywords else dataclasses.MISSING
        metadata = ast.literal_eval(keywords["metadata"]) if "metadata" in keywords else {}
        return default, metadata
    except ValueError as error:
        raise TypeError(
            f"{where}: its default is not a literal the CLI can read without importing ({error})"
        ) from error


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One `--flag` per field of `cls` (see `add_field_arguments`)."""
    add_field_arguments(parser, dataclass_field_specs(cls))


def add_field_arguments(parser: argparse.ArgumentParser, fields: Sequence[FieldSpec]) -> None:
    """One `--flag` per field: typed from its annotation, documented from `metadata["help"]`, restricted
    to `metadata["choices"]`. A bool field off by default is a `--flag` that turns it on; one on by default is a
    `--no-flag` that turns it off; a `bool | None` one (None: unset, as in runs recorded before it existed) is a
    `--flag` that sets it True."""
    for spec in fields:
        flag = spec.name.replace("_", "-")
        help_text = spec.metadata.get("help", "")
        if spec.type == "bool | None" and spec.default is None:
            parser.add_argument(f"--{flag}", action="store_true", default=None, help=help_text)
            continue
        if spec.type == "bool":
            if spec.default is True:
                parser.add_argument(
                    f"--no-{flag}", dest=spec.name, action="store_false", help=f"do not {help_text}"
                )
            else:
                parser.add_argument(f"--{flag}", action="store_true", help=help_text)
            continue
        kind = {"int": int, "float": float}.get(str(spec.type).split(" ")[0], str)
        parser.add_argument(
            f"--{flag}",
            type=kind,
            default=spec.default,
            choices=spec.metadata.get("choices"),
            help=f"{help_text} ({spec.default})".strip(),
        )


def dataclass_from_namespace(cls: type[T], namespace: argparse.Namespace, **overrides: Any) -> T:
    """`cls` built from the parsed flags that are its fields (others, like the subcommand's handler, are left)."""
    names = {spec.name for spec in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in vars(namespace).items() if key in names}, **overrides)


def add_prepare_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `poolingvq prepare-dataset`."""
    parser.add_argument("dataset", choices=DATASETS, help="which dataset to prepare")
    parser.add_argument("--data-dir", help="the unzipped release (default: download the public release)")
    parser.add_argument(
        "--config", help="the split: paper (default), release (emopia) or release_0.2 (vgmidi)"
    )
    parser.add_argument("--audio-dir", help="your audio, one file per clip named <id>.wav|.flac|.mp3")
    parser.add_argument(
        "--no-synthesize",
        action="store_true",
        help="do not synthesize audio for clips without an audio file (they get no audio_path)",
    )
    parser.add_argument(
        "--soundfont", help="an .sf2 soundfont for synthesis (default: the synthesizer's own)"
    )
    parser.add_argument("--sample-rate", type=int, default=24000, help="of synthesized audio (default 24000)")
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help="synthesize at most this much of a clip"
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="of the draws that make splits the release lacks"
    )
    parser.add_argument("--cache-dir", help="the datasets cache to prepare in (default: HF_DATASETS_CACHE)")
    parser.add_argument("--out", required=True, help="the folder to write the dataset and its card to")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `poolingvq train`: one per `TrainingArguments` field, read from training.py's source."""
    add_field_arguments(
        parser, source_field_specs(Path(__file__).with_name("training.py"), "TrainingArguments")
    )


def add_pretrain_midi_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `poolingvq pretrain-midi`: one per `PretrainingArguments` field, read from pretraining.py."""
    add_field_arguments(
        parser, source_field_specs(Path(__file__).with_name("pretraining.py"), "PretrainingArguments")
    )


def add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `poolingvq experiment`: the suite's own, then every flag of `train`."""
    parser.add_argument("--suite", choices=("table1", "ablation", "codebook-sweep"), default="ablation")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant (3)")
    parser.add_argument(
        "--codebook-sizes",
        type=lambda text: tuple(int(x) for x in text.split(",")),
        default=CODEBOOK_SIZES,
        help="P grid of the codebook sweep, comma-separated (8,16,32,64,128,256)",
    )
    parser.add_argument(
        "--variants",
        type=lambda text: tuple(name.strip() for name in text.split(",")),
        default=None,
        help="only these variants of the suite, comma-separated (default: all of them)",
    )
    parser.add_argument(
        "--save-models",
        action="store_true",
        help="also write each run's model folder (default: metrics only)",
    )
    add_training_arguments(parser)
