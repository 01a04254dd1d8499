"""Where a named model lives: a local path as it is, anything else as a Hugging Face Hub repo id.

Every flag that names a model (`import-weights --mert/--midibert`, `train --model-init/--midi-encoder`,
`predict --model`, `demo --model`) goes through [`resolve_model_dir`], so they all accept the same things and
fail the same way. Downloads are huggingface_hub's own (`snapshot_download`): its cache (`HF_HUB_CACHE`, shared
with transformers), its offline mode (`HF_HUB_OFFLINE=1` serves what the cache holds and never touches the
network), its tokens and its revision pinning. Nothing is copied out of the cache; the path returned is the
cached snapshot itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors_poolingvq import PoolingVQInputError

#: A commit id, as the Hub names snapshot folders.
_COMMIT_LENGTH = 40


def is_local(name_or_path: str | os.PathLike) -> bool:
    """Whether `name_or_path` names something on this machine (which then wins over a Hub repo of that name)."""
    return Path(name_or_path).expanduser().exists()


def resolve_model_dir(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    allow_patterns: str | Sequence[str] | None = None,
    flag: str | None = None,
    repo_type: str = "model",
) -> Path:
    """A local file or folder as it is; else the folder of Hub repo `name_or_path` in huggingface_hub's cache,
    downloaded when it is not there yet (only the files matching `allow_patterns`, all of them by default).

    `revision` (a branch, tag or commit) pins the Hub snapshot; it means nothing for a local path and is refused
    there, rather than silently ignored. `flag` (e.g. `"--mert"`) only names the input in error messages.
    `repo_type` is huggingface_hub's: `"dataset"` for `train --dataset-path` (a prepared dataset pushed to the Hub).

    Raises `PoolingVQInputError` with one line saying what went wrong (no such file, not a repo id, not on the
    Hub, not in the cache while offline, unknown revision...), so that the command line prints it without a
    traceback.
    """
    source = f"{flag} {name_or_path}" if flag else os.fspath(name_or_path)
    if is_local(name_or_path):
        if revision is not None:
            raise PoolingVQInputError(source, f"a local path has no revision (got --revision {revision})")
        return Path(name_or_path).expanduser()

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import validate_repo_id

    repo_id = os.fspath(name_or_path)
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise PoolingVQInputError(
            source, "no such file or folder, and not a Hugging Face Hub repo id (org/name)"
        ) from None
    try:
        folder = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            allow_patterns=list(allow_patterns)
            if isinstance(allow_patterns, (list, tuple))
            else allow_patterns,
        )
    except RevisionNotFoundError:
        problem = f"the Hub repo has no revision {revision!r}"
    except GatedRepoError:
        problem = "a gated Hub repo: accept its terms on huggingface.co, then `hf auth login`"
    except RepositoryNotFoundError:
        kind = "" if repo_type == "model" else f"{repo_type} "
        problem = f"no such file or folder here, nor a Hub {kind}repo of that name (or it is private: `hf auth login`)"
    except LocalEntryNotFoundError:
        problem = _not_cached_problem(revision)
    except (HfHubHTTPError, OSError) as error:  # the Hub answered with an error, or the disk did
        problem = f"could not be fetched from the Hub: {type(error).__name__}: {_first_line(error)}"
    else:
        return Path(folder)
    raise PoolingVQInputError(source, problem)


def _not_cached_problem(revision: str | None) -> str:
    from huggingface_hub import constants

    where = f"the Hub cache {constants.HF_HUB_CACHE}"
    what = f"revision {revision!r}" if revision else "this repo"
    if constants.HF_HUB_OFFLINE:
        return (
            f"no such file or folder, and {what} is not in {where} (HF_HUB_OFFLINE=1: nothing is downloaded)"
        )
    return f"no such file or folder, and the Hub could not be reached nor {what} found in {where}"


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else ""


def snapshot_commit(folder: str | os.PathLike) -> str | None:
    """The commit of a folder `resolve_model_dir` took from the Hub cache (`.../snapshots/<commit>`), else None."""
    folder = Path(folder)
    if folder.parent.name == "snapshots" and len(folder.name) == _COMMIT_LENGTH:
        return folder.name
    return None


def source_record(name_or_path: str | os.PathLike, folder: str | os.PathLike) -> dict[str, Any]:
    """Where weights came from, for provenance records: the Hub repo id and the commit it resolved to, or the
    local path (absolute, so that the record still says where after a `cd`)."""
    commit = snapshot_commit(folder) if not is_local(name_or_path) else None
    if commit is not None:
        return {"source": os.fspath(name_or_path), "revision": commit}
    return {"source": str(Path(folder).expanduser().resolve())}


__all__ = ["is_local", "resolve_model_dir", "snapshot_commit", "source_record"]
