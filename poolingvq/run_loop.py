"""The skeleton every run of the package shares (`poolingvq train` and `poolingvq pretrain-midi`).

A run is: an Accelerator whose project folder is the output folder (`make_accelerator`); a state object, the
run's counters and its best epoch (`RunState`), checkpointed with the weights, optimizer and RNGs; `--resume`
from the newest checkpoint (`register_and_resume`); then epochs (`run_epochs`), each one: seed the data order
with the epoch, train, evaluate, keep the best, checkpoint, prune. A recipe gives, as callbacks, only what differs
between runs: what an epoch trains, what evaluation measures, what "better" means, what the epoch records.

Checkpoints are `checkpoints/epoch_NNNN` after every epoch (and `epoch_NNNN_step_NNNNNNNN` within one, where a
recipe saves them: `checkpoints.step_checkpoint`), written whole or not at all (`checkpoints.py`); the two newest
are kept.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .checkpoints import epoch_checkpoint, latest_checkpoint, save_checkpoint

logger = logging.getLogger("poolingvq.run_loop")


def make_accelerator(output_dir: Path, *, logging_dir: str | None = None, **options: Any) -> Any:
    """An `accelerate.Accelerator` whose project folder is `output_dir` (tracker logs in `logging_dir`, default the
    same folder), with Accelerate's seedable sampler: a shuffled loader's order is a function of (seed, epoch), so a
    resumed run sees the batches an uninterrupted one does. `options` go to the Accelerator as they are.

    Other processes than the main one log errors only (`quiet_other_processes`)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    accelerator = Accelerator(
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=logging_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        **options,
    )
    quiet_other_processes(accelerator)
    logger.info(
        "Accelerate: %d process(es) on %s, mixed precision %s",
        accelerator.num_processes,
        accelerator.device,
        accelerator.mixed_precision,
    )
    return accelerator


def quiet_other_processes(accelerator: Any) -> None:
    """Logs from the main process only: the other processes keep their errors and nothing else (every process
    holds the same gathered results, so anything else would only be repeated once per process)."""
    if accelerator.is_main_process:
        return
    logging.getLogger("poolingvq").setLevel(logging.ERROR)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    try:
        import datasets
    except ImportError:
        return
    datasets.utils.logging.set_verbosity_error()


@dataclass
class RunState:
    """What a checkpoint needs beyond the weights, optimizer, scheduler and RNGs (which Accelerate saves): the
    fields every run has. A recipe's state adds its own; each field is a key of the saved `custom_checkpoint_<i>.pkl`,
    so renaming one breaks `--resume` from the checkpoints already written."""

    epoch: int = 0  # epochs finished
    best_epoch: int = -1  # 1-based, -1 before the first evaluation
    history: list[dict[str, Any]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def register_and_resume(
    accelerator: Any, checkpointed: Sequence[Any], checkpoints: Path, *, resume: bool
) -> Path | None:
    """Register `checkpointed` (the run's state, and what else Accelerate does not prepare, e.g. a plateau
    scheduler) for checkpointing, and with `resume` load the newest checkpoint in `checkpoints` into everything.
    The order of `checkpointed` is part of the checkpoint layout (`custom_checkpoint_<index>.pkl`): keep it.

    Returns the checkpoint resumed from, None when not resuming; FileNotFoundError when there is none."""
    accelerator.register_for_checkpointing(*checkpointed)
    if not resume:
        return None
    last = latest_checkpoint(checkpoints)
    if last is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {checkpoints}")
    accelerator.load_state(str(last))
    return last


class SeededByEpoch(Protocol):
    """A data loader or sampler whose order is a function of (seed, epoch)."""

    def set_epoch(self, epoch: int) -> None: ...


@dataclass
class EpochResult:
    """One finished epoch: its number (1-based), the training and evaluation metrics, and whether it is the best."""

    epoch: int
    train: dict[str, Any]
    evaluation: dict[str, Any]
    improved: bool


def run_epochs(
    accelerator: Any,
    state: RunState,
    checkpoints: Path,
    *,
    data_order: SeededByEpoch,
    keep_going: Callable[[], bool],
    train_epoch: Callable[[int], dict[str, Any]],
    evaluate: Callable[[int], dict[str, Any]],
    is_better: Callable[[dict[str, Any]], bool],
    save_best: Callable[[], None],
    end_epoch: Callable[[EpochResult], None],
) -> None:
    """Epochs while `keep_going()`, from `state.epoch` (0, or where a resumed checkpoint left off). Each epoch:

    1. `data_order.set_epoch(epoch)`, then `train_epoch(epoch)` and `evaluate(epoch)` (`epoch` 0-based);
    2. `state.epoch` counts it; when `is_better(evaluation)` (the recipe compares with the best it keeps),
       `state.best_epoch` becomes this epoch and the main process calls `save_best()` (the best weights);
    3. `end_epoch(result)`, in every process: what the recipe records (its best value, history, logs, scheduler);
    4. the state of the run goes to `checkpoints/epoch_NNNN`, and only the two newest checkpoints stay.
    """
    while keep_going():
        data_order.set_epoch(state.epoch)
        train_metrics = train_epoch(state.epoch)
        evaluation = evaluate(state.epoch)
        state.epoch += 1
        improved = is_better(evaluation)
        if improved:
            state.best_epoch = state.epoch
            if accelerator.is_main_process:
                save_best()
        end_epoch(EpochResult(state.epoch, train_metrics, evaluation, improved))
        accelerator.wait_for_everyone()
        save_checkpoint(accelerator, epoch_checkpoint(checkpoints, state.epoch))


__all__ = [
    "EpochResult",
    "RunState",
    "make_accelerator",
    "quiet_other_processes",
    "register_and_resume",
    "run_epochs",
]
