"""Command-line flags from a dataclass of arguments, and the dataclass back from the parsed flags.

`poolingvq train`, `experiment` and `pretrain-midi` keep their settings in dataclasses (the paper's values as
defaults, help in each field's metadata); this turns each field into one typed `--flag`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One `--flag` per field of `cls`: typed from its annotation, documented from `metadata["help"]`, restricted
    to `metadata["choices"]`. A bool field off by default is a `--flag` that turns it on; one on by default is a
    `--no-flag` that turns it off."""
    for spec in dataclasses.fields(cls):
        flag = spec.name.replace("_", "-")
        help_text = spec.metadata.get("help", "")
        if spec.type in ("bool", bool):
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
