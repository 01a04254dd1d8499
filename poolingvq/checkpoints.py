"""Checkpoints of a run, shared by `poolingvq train` and `poolingvq pretrain-midi`: written whole or not at all,
listed and pruned the same way (`run_loop.py` is the run around them).

A checkpoint is `accelerator.save_state` into `checkpoints/epoch_NNNN[_step_NNNNNNNN]/`. It is written into a
hidden sibling first (`.epoch_NNNN.partial`) and renamed into place by the package's atomic writer
(`files_poolingvq.replace_directory`), so a run killed while saving leaves the previous checkpoints as they were
and `--resume` never meets half a checkpoint. The hidden name is the same in every process of a distributed run,
as they all write into it; what a killed run left there is removed by the next save or prune.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .files_poolingvq import atomic_path, replace_directory

CHECKPOINT_PREFIX = "epoch_"
_PARTIAL_SUFFIX = ".partial"
#: Checkpoints kept after each save: the newest, and the one before it in case the newest is unusable.
KEEP_CHECKPOINTS = 2


def epoch_checkpoint(folder: Path, epoch: int) -> Path:
    """The checkpoint written after `epoch` epochs: `folder/epoch_NNNN`."""
    return folder / f"{CHECKPOINT_PREFIX}{epoch:04d}"


def step_checkpoint(folder: Path, epoch: int, step: int) -> Path:
    """A checkpoint written within an epoch, after `epoch` finished epochs and `step` optimizer steps in all:
    `folder/epoch_NNNN_step_NNNNNNNN`, which sorts after the finished epoch's and before the next one's."""
    return folder / f"{CHECKPOINT_PREFIX}{epoch:04d}_step_{step:08d}"


def save_tensors_atomically(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """`safetensors.torch.save_file` through the atomic writer: `path` holds the old tensors or the new."""
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary))


def save_state_atomically(accelerator: Any, folder: Path) -> None:
    """`accelerator.save_state(folder)`, whole or not at all (see the module docstring). Call it in every process."""
    partial = folder.with_name(f".{folder.name}{_PARTIAL_SUFFIX}")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)  # a killed run's attempt at the same checkpoint
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_directory(partial, folder)
    accelerator.wait_for_everyone()


def save_checkpoint(accelerator: Any, checkpoint: Path, keep: int = KEEP_CHECKPOINTS) -> None:
    """`save_state_atomically` into `checkpoint`, then `prune_checkpoints` of its folder (main process). Call it in
    every process."""
    save_state_atomically(accelerator, checkpoint)
    if accelerator.is_main_process:
        prune_checkpoints(checkpoint.parent, keep)


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in `folder`, or None (names sort in training order)."""
    candidates = sorted(folder.glob(f"{CHECKPOINT_PREFIX}*")) if folder.exists() else []
    return candidates[-1] if candidates else None


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Keep the `keep` newest checkpoints; delete the older ones and the partial ones killed runs left behind.
    Call it in the main process only, after a save."""
    for old in sorted(folder.glob(f"{CHECKPOINT_PREFIX}*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for partial in folder.glob(f".{CHECKPOINT_PREFIX}*{_PARTIAL_SUFFIX}"):
        shutil.rmtree(partial, ignore_errors=True)


__all__ = [
    "epoch_checkpoint",
    "latest_checkpoint",
    "prune_checkpoints",
    "save_checkpoint",
    "save_state_atomically",
    "save_tensors_atomically",
    "step_checkpoint",
]
