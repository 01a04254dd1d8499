"""`poolingvq push-to-hub DIR REPO_ID` and `train --push-to-hub REPO_ID`: put a model folder on the Hub as it is
meant to be read there.

What goes up is the model and nothing else: the top-level files of the folder (weights, `config.json`, the
processor's files, the model card `README.md`, `metrics.json` and the other JSON records), never `checkpoints/`,
`logs/`, `best_trained_weights.safetensors` or temporary files, which `poolingvq train` leaves beside the model as
`transformers.Trainer` leaves its `checkpoint-*` folders beside its final model. The files are staged in a
temporary folder and uploaded with one `HfApi.upload_folder` commit, so what is listed (`--dry-run`) is exactly
what is sent.

Staging also makes the folder load with transformers alone (`trust_remote_code=True`) on the Hub: a code file that
`config.json` or the processor's config names (and every file those import) is added from this package when the
folder lacks it, and a PoolingVQ `config.json` without `auto_map` gets the one `save_pretrained` writes. The card is
ours: its usage block is pointed at the repo id, and no generic card replaces it (`model.push_to_hub` would write
transformers' generic README when the repo has none, and would not upload the processor).

Only the standard library is imported at module level; huggingface_hub when something is uploaded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors_poolingvq import PoolingVQInputError

PACKAGE_DIR = Path(__file__).resolve().parent
#: What `poolingvq train` writes beside the model that is not part of it (its folders are left out anyway).
TRAINING_LEFTOVERS = frozenset({"best_trained_weights.safetensors"})
#: Suffixes of files that are never part of a model: temporary writes, editor and OS leftovers.
SKIPPED_SUFFIXES = (".tmp", ".lock", ".pyc", "~")
SKIPPED_NAMES = frozenset({".DS_Store", "Thumbs.db"})
#: The weight files one of which a model folder must hold.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
#: Processor configs whose `auto_map` name code files (transformers 5 writes processor_config.json).
PROCESSOR_CONFIGS = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
#: What `PoolingVQForMusicEmotion.save_pretrained` writes into config.json for remote code.
POOLINGVQ_AUTO_MAP = {
    "AutoConfig": "configuration_poolingvq.PoolingVQConfig",
    "AutoModel": "modeling_poolingvq.PoolingVQForMusicEmotion",
    "AutoModelForAudioClassification": "modeling_poolingvq.PoolingVQForMusicEmotion",
}
#: What `PoolingVQProcessor.save_pretrained` writes into processor_config.json for remote code.
POOLINGVQ_PROCESSOR_AUTO_MAP = {"AutoProcessor": "processing_poolingvq.PoolingVQProcessor"}
POOLINGVQ_FEATURE_EXTRACTOR_AUTO_MAP = {
    "AutoFeatureExtractor": "feature_extraction_poolingvq.PoolingVQFeatureExtractor",
    **POOLINGVQ_PROCESSOR_AUTO_MAP,
}
POOLINGVQ_PIPELINES = {
    "music-emotion": {
        "impl": "pipeline_music_emotion.MusicEmotionPipeline",
        "pt": ["AutoModelForAudioClassification"],
        "tf": [],
        "type": "multimodal",
    }
}
#: The card's usage line, whose model argument is pointed at the repo the card goes to.
USAGE_MODEL = re.compile(r'(pipeline\(\s*"music-emotion"\s*,\s*model=)"[^"\n]*"')
#: `from .name import ...`, `from . import a, b`, `import .name` (what transformers follows in remote code).
_RELATIVE_FROM = re.compile(r"^[ \t]*from[ \t]+\.([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.MULTILINE)


def model_files(folder: str | os.PathLike) -> list[str]:
    """The files of `folder` that are the model (names, sorted): its top-level files, without training leftovers,
    hidden or temporary files. Sub-folders (`checkpoints/`, `logs/`) are never part of it."""
    folder = Path(folder)
    return sorted(
        path.name
        for path in folder.iterdir()
        if path.is_file()
        and not path.name.startswith(".")
        and path.name not in TRAINING_LEFTOVERS | SKIPPED_NAMES
        and not path.name.endswith(SKIPPED_SUFFIXES)
    )


def relative_imports(source: str) -> set[str]:
    """The sibling modules a Python file imports relatively (`from .x import y` -> `x`; `from . import a, b` ->
    `a`, `b`), wherever the import stands (also inside functions, as transformers' remote code loader reads them)."""
    modules = set()
    for module, names in _RELATIVE_FROM.findall(source):
        if module:
            modules.add(module.split(".")[0])
        else:
            names = re.sub(r"#[^\n]*", "", names)
            modules.update(
                name.split()[0] for name in re.split(r"[,()]", names) if name.strip()
            )  # `from . import a as b`: the module is a
    return modules


def module_closure(roots: Iterable[str], *search: Path) -> list[str]:
    """`roots` (module names) and every sibling module they import, transitively, as file names (sorted). Each
    module is looked for in the `search` folders in order; one found nowhere is left out (a package's
    sub-package, or a name `from . import` took from `__init__`)."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        path = next((base / f"{module}.py" for base in search if (base / f"{module}.py").is_file()), None)
        if path is None:
            continue
        seen.add(module)
        pending.extend(relative_imports(path.read_text(encoding="utf-8")))
    return sorted(f"{module}.py" for module in seen)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise PoolingVQInputError(path, f"not a readable JSON file ({error})") from error


def _auto_map_modules(mapping: dict[str, Any] | None) -> set[str]:
    """Module names in an `auto_map` (values like "module.Class", ["module.Class", None], "repo--module.Class")."""
    modules = set()
    for value in (mapping or {}).values():
        for reference in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(reference, str) and "." in reference:
                modules.add(reference.split("--")[-1].rsplit(".", 1)[0])
    return modules


def remote_code_modules(config: dict[str, Any], processor_configs: Iterable[dict[str, Any]]) -> set[str]:
    """The modules `trust_remote_code=True` loads from a folder: those its configs' `auto_map` and
    `custom_pipelines` name (before following their imports)."""
    modules = _auto_map_modules(config.get("auto_map"))
    for task in (config.get("custom_pipelines") or {}).values():
        impl = task.get("impl") if isinstance(task, dict) else None
        if isinstance(impl, str) and "." in impl:
            modules.add(impl.rsplit(".", 1)[0])
    for processor_config in processor_configs:
        modules |= _auto_map_modules(processor_config.get("auto_map"))
        for value in processor_config.values():  # processor_config.json nests the feature extractor's config
            if isinstance(value, dict):
                modules |= _auto_map_modules(value.get("auto_map"))
    return modules


@dataclass
class StagedModel:
    """A model folder as it goes up: the folder it was staged in and its files, with what staging changed."""

    folder: Path
    files: list[str]
    added: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: huggingface_hub's `CommitInfo` once uploaded (None for a dry run); the staged folder is gone by then
    commit: Any = None


def stage_model_folder(
    source: str | os.PathLike, target: str | os.PathLike, repo_id: str | None = None
) -> StagedModel:
    """Copy the model of `source` (see `model_files`) into the empty or new folder `target`, completed so that it
    loads with transformers alone, its card's usage pointed at `repo_id`.

    Raises `PoolingVQInputError` when `source` is not a model folder (no `config.json`, no weights).
    """
    source, target = Path(source), Path(target)
    if not source.is_dir():
        raise PoolingVQInputError(source, "no such model folder")
    files = model_files(source)
    if "config.json" not in files:
        raise PoolingVQInputError(source, "not a model folder: it has no config.json")
    if not any(name in files for name in WEIGHT_FILES):
        raise PoolingVQInputError(
            source, f"not a model folder: it holds no weights ({', '.join(WEIGHT_FILES)})"
        )
    target.mkdir(parents=True, exist_ok=True)
    for name in files:
        shutil.copyfile(source / name, target / name)
    staged = StagedModel(target, files)

    config = _read_json(target / "config.json")
    if config.get("model_type") == "poolingvq" and not config.get("auto_map"):
        config["auto_map"] = dict(POOLINGVQ_AUTO_MAP)
        config.setdefault("custom_pipelines", POOLINGVQ_PIPELINES)
        (target / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        staged.notes.append("config.json: added the auto_map and custom_pipelines of remote code")
    processor_configs = [_read_json(target / name) for name in PROCESSOR_CONFIGS if name in files]
    if "processor_config.json" in files and _wire_processor(processor_configs[0]):
        (target / "processor_config.json").write_text(json.dumps(processor_configs[0], indent=2) + "\n")
        staged.notes.append("processor_config.json: added the auto_map of remote code")
    if config.get("model_type") == "poolingvq" and not processor_configs:
        staged.notes.append(
            "no processor files (processor_config.json): pipeline() will not find a processor; save one "
            "with PoolingVQProcessor.for_model(config).save_pretrained(folder)"
        )
    needed = module_closure(remote_code_modules(config, processor_configs), target, PACKAGE_DIR)
    for name in needed:
        if not (target / name).exists():
            shutil.copyfile(PACKAGE_DIR / name, target / name)
            staged.added.append(name)
    if staged.added:
        staged.notes.append(
            f"added the remote code files the folder lacked, from this package: {', '.join(staged.added)}"
        )

    card = target / "README.md"
    if not card.exists():
        staged.notes.append("no model card (README.md): the repo will have none")
    elif repo_id is not None:
        text = card.read_text(encoding="utf-8")
        pointed = USAGE_MODEL.sub(lambda match: f'{match.group(1)}"{repo_id}"', text)
        if pointed != text:
            card.write_text(pointed, encoding="utf-8")
    staged.files = sorted({*files, *staged.added})
    return staged


def _wire_processor(processor_config: dict[str, Any]) -> bool:
    """Give a PoolingVQ processor config the `auto_map`s that `AutoProcessor` needs for remote code (a folder
    saved without them loads with this package's classes only); whether anything was added."""
    if processor_config.get("processor_class") != "PoolingVQProcessor":
        return False
    changed = False
    if not processor_config.get("auto_map"):
        processor_config["auto_map"] = dict(POOLINGVQ_PROCESSOR_AUTO_MAP)
        changed = True
    extractor = processor_config.get("feature_extractor")
    if isinstance(extractor, dict) and not extractor.get("auto_map"):
        extractor["auto_map"] = dict(POOLINGVQ_FEATURE_EXTRACTOR_AUTO_MAP)
        changed = True
    return changed


def check_repo_id(repo_id: str, flag: str = "REPO_ID") -> None:
    """Refuse a malformed repo id in one line, before any work (huggingface_hub's own rule: `name` or `org/name`)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PoolingVQInputError(f"{flag} {repo_id}", f"not a Hub repo id (org/name): {error}") from None


def create_repo(repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Create the model repo (nothing happens when it exists; an existing repo keeps its visibility); its URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return str(HfApi(token=token).create_repo(repo_id, private=private or None, exist_ok=True))
    except HfHubHTTPError as error:
        raise PoolingVQInputError(
            repo_id, f"the Hub refused to create the repo: {_first_line(error)}"
        ) from None


def push_model_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    dry_run: bool = False,
) -> StagedModel:
    """Upload the model of `folder` to the Hub model repo `repo_id` in one commit (see the module's docstring).

    Args:
        private: create the repo private (an existing repo keeps its visibility).
        revision: the branch to commit to (created from main when it does not exist); default main.
        commit_message: default "Upload PoolingVQ model".
        token: default huggingface_hub's (`HF_TOKEN`, `hf auth login`).
        dry_run: stage and return what would go up, without touching the network.

    Returns:
        what went up (or would, with `dry_run`): the files, what staging added, and the commit.
    """
    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="poolingvq-push-") as staging:
        staged = stage_model_folder(folder, Path(staging) / "model", repo_id)
        if dry_run:
            return staged
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError

        api = HfApi(token=token)
        create_repo(repo_id, private=private, token=token)
        try:
            if revision is not None:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            staged.commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=staged.folder,
                revision=revision,
                commit_message=commit_message or "Upload PoolingVQ model",
            )
        except HfHubHTTPError as error:
            raise PoolingVQInputError(repo_id, f"the Hub refused the upload: {_first_line(error)}") from None
        return staged


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def push_to_hub_command(args: argparse.Namespace) -> int:
    """`poolingvq push-to-hub DIR REPO_ID [--private] [--revision BRANCH] [--commit-message MSG] [--dry-run]`."""
    staged = push_model_folder(
        args.folder,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        dry_run=args.dry_run,
    )
    for note in staged.notes:
        print(f"note: {note}")
    verb = "would upload" if args.dry_run else "uploaded"
    print(f"{verb} {len(staged.files)} files to https://huggingface.co/{args.repo_id}:")
    for name in staged.files:
        print(f"  {name}")
    if not args.dry_run:
        print(f"commit: {getattr(staged.commit, 'commit_url', staged.commit)}")
    return 0


__all__ = [
    "StagedModel",
    "check_repo_id",
    "model_files",
    "module_closure",
    "push_model_folder",
    "push_to_hub_command",
    "relative_imports",
    "stage_model_folder",
]
