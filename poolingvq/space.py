"""`poolingvq export-space DIR [--model NAME_OR_PATH]`: a Hugging Face Space folder that builds from itself.

`poolingvq` is not on PyPI, so a Space cannot `pip install` it: the folder carries the code it runs instead. What
is written:

- `poolingvq/`: the package modules the app imports (`demo.py` and every sibling module it imports, found by
  following the relative imports as transformers follows remote code), and, for the default model, the embedded
  model folder inside it, where the package looks for it;
- `models/NAME/`: a local `--model` folder's model files (a Hub repo id is downloaded by the Space at start);
- `app.py`: builds the page with `poolingvq.demo` (so the Space and `poolingvq demo` run the same code);
- `requirements.txt`: one pinned PyPI package per third-party import of those modules, at the version installed
  here, where the export was tested (torch without its local `+cpu` label: PyPI's wheel);
- `README.md`: the Space's YAML (sdk gradio at the installed version, app_file, python_version, the model's
  licence and Hub id when it has them) and what the page does, naming the model and linking its card.

The repository keeps no exported folder (it would be a second copy of the package and of the model's weights, stale
after any change): export when publishing, e.g. `poolingvq export-space space && hf upload USER/SPACE space .
--repo-type space`.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import os
import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from .errors_poolingvq import PoolingVQInputError
from .publish import PACKAGE_DIR, model_files, module_closure

#: The modules the app starts from: the demo, and the package's `__init__` with the registration it runs.
APP_MODULES = ("demo", "__init__", "registration")
#: Where the package keeps its embedded model, relative to the package folder (`predict.EMBEDDED_MODEL_DIR`).
EMBEDDED_MODEL = Path("embedded") / "poolingvq-emopia"
#: What an export writes at the top of DIR (replaced on every export; anything else in DIR is left alone).
WRITTEN = ("README.md", "app.py", "requirements.txt", "poolingvq", "models")
#: `importlib.util.find_spec("name")` in the code: a package used without importing it (pretty_midi's soundfont).
_FIND_SPEC = re.compile(r"""find_spec\(\s*["']([\w.]+)["']""")


def third_party_imports(source: str) -> set[str]:
    """Top-level names of the absolute imports of a module, and of packages it locates with `find_spec`, except
    imports guarded by `try: ... except ImportError` (optional ones)."""
    tree = ast.parse(source)
    optional: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            optional.update(id(child) for statement in node.body for child in ast.walk(statement))
    names = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    names.update(name.split(".")[0] for name in _FIND_SPEC.findall(source))
    return {name for name in names if name not in sys.stdlib_module_names and name != "__future__"}


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    caught = handler.type
    types = caught.elts if isinstance(caught, ast.Tuple) else [caught]
    return any(isinstance(t, ast.Name) and t.id in ("ImportError", "ModuleNotFoundError") for t in types)


def pinned_requirements(import_names: Iterable[str]) -> list[str]:
    """`distribution==version` for each imported name, at the version installed here (sorted). A version's local
    label (`2.13.0+cpu`) is dropped: PyPI publishes no such labels."""
    owners = importlib.metadata.packages_distributions()
    requirements = {}
    for name in import_names:
        distributions = owners.get(name)
        if not distributions:
            raise PoolingVQInputError(
                name, "imported by the Space's code but not installed here: cannot pin it"
            )
        distribution = distributions[0]
        version = importlib.metadata.version(distribution).split("+")[0]
        canonical = re.sub(r"[-_.]+", "-", distribution).lower()
        requirements[canonical] = f"{canonical}=={version}"
    return [requirements[key] for key in sorted(requirements)]


def read_card_metadata(card: Path) -> dict:
    """The YAML header of a model card ({} when there is none or it cannot be read)."""
    if not card.is_file():
        return {}
    from huggingface_hub.repocard import metadata_load

    try:
        return metadata_load(card) or {}
    except Exception:  # a hand-edited card with broken YAML still gets a Space
        return {}


def export_space(folder: str | os.PathLike, model: str | None = None, title: str | None = None) -> list[str]:
    """Write the Space for `model` (a local model folder, a Hub repo id, or None: the embedded model) into
    `folder`; returns the files written, relative to it (sorted).

    Raises `PoolingVQInputError` when `model` is neither a model folder nor a Hub repo id, or when the default
    model is wanted and the package embeds none.
    """
    from .hub import is_local
    from .publish import check_repo_id

    folder = Path(folder)
    if model is None:
        source = PACKAGE_DIR / EMBEDDED_MODEL
        if not (source / "config.json").is_file():
            raise PoolingVQInputError(source, "this package embeds no model: export with --model")
        model_name, card_path, exported = source.name, source / "README.md", None
        card_link = (Path("poolingvq") / EMBEDDED_MODEL / "README.md").as_posix()
    elif is_local(model):
        source = Path(model).expanduser()
        if not (source / "config.json").is_file():
            raise PoolingVQInputError(model, "not a model folder: it has no config.json")
        model_name, card_path = source.resolve().name, source / "README.md"
        exported = f"models/{model_name}"
        card_link = f"{exported}/README.md"
    else:
        check_repo_id(model, flag="--model")
        model_name, card_path, exported = model, None, model
        card_link = f"https://huggingface.co/{model}"

    for name in WRITTEN:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    folder.mkdir(parents=True, exist_ok=True)

    package = folder / "poolingvq"
    package.mkdir()
    modules = module_closure(APP_MODULES, PACKAGE_DIR)
    for name in modules:
        shutil.copyfile(PACKAGE_DIR / name, package / name)
    if model is None or is_local(model):
        target = package / EMBEDDED_MODEL if model is None else folder / exported
        target.mkdir(parents=True)
        for name in model_files(source):
            shutil.copyfile(source / name, target / name)

    imports = set().union(
        *(third_party_imports((package / name).read_text(encoding="utf-8")) for name in modules)
    )
    requirements = pinned_requirements(imports)
    (folder / "requirements.txt").write_text(requirements_text(requirements))
    (folder / "app.py").write_text(app_text(exported, model is not None and not is_local(model)))
    metadata = read_card_metadata(card_path) if card_path is not None else {}
    (folder / "README.md").write_text(
        readme_text(model_name, card_link, exported, metadata, title, requirements, model is None)
    )
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def requirements_text(requirements: list[str]) -> str:
    return (
        "# Written by `poolingvq export-space`: the PyPI packages the code in poolingvq/ imports, pinned to the\n"
        "# versions it was tested with. poolingvq itself is not on PyPI: its code is the folder beside this file.\n"
        + "\n".join(requirements)
        + "\n"
    )


def app_text(exported: str | None, hub: bool) -> str:
    """app.py: the page from `poolingvq.demo` (the package copy beside it) on the exported model."""
    if exported is None:
        model_line = "EXPORTED_MODEL = None  # the model embedded in poolingvq/ beside this file"
    elif hub:
        model_line = f"EXPORTED_MODEL = {exported!r}  # a Hub repo, downloaded when the Space starts"
    else:
        model_line = f"EXPORTED_MODEL = str(HERE / {exported!r})  # the model folder beside this file"
    return f'''"""The PoolingVQ Space, written by `poolingvq export-space` (export again rather than edit).

The page is `poolingvq.demo`, from the copy of the package's code beside this file, so this Space and
`poolingvq demo` run the same code. The Space variable POOLINGVQ_MODEL (a Hub repo id) replaces the model.
"""

import os
from pathlib import Path

from poolingvq.demo import build_demo, launch_demo

HERE = Path(__file__).resolve().parent
{model_line}

demo = build_demo(
    model=os.environ.get("POOLINGVQ_MODEL") or EXPORTED_MODEL,
    include_default=EXPORTED_MODEL is None,  # an exported model is the page's only model
)

if __name__ == "__main__":
    # host=None: Gradio reads GRADIO_SERVER_NAME, which a Space sets to 0.0.0.0
    launch_demo(demo, host=None)
'''


def readme_text(
    model_name: str,
    card_link: str,
    exported: str | None,
    metadata: dict,
    title: str | None,
    requirements: list[str],
    embedded: bool,
) -> str:
    """The Space's card: its YAML (what the Hub needs to build it) and what the page does."""
    import yaml

    gradio = next((r.split("==")[1] for r in requirements if r.startswith("gradio==")), None)
    if gradio is None:
        raise PoolingVQInputError(
            "gradio", "the Space's code does not import gradio: nothing to pin sdk_version to"
        )
    header = {
        "title": title or "PoolingVQ music emotion",
        "emoji": "🎹",
        "colorFrom": "indigo",
        "colorTo": "red",
        "sdk": "gradio",
        "sdk_version": gradio,
        "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
        "app_file": "app.py",
        "pinned": False,
        "short_description": "Music emotion (audio + MIDI) and what PoolingVQ hears",
    }
    if metadata.get("license"):
        header["license"] = metadata["license"]
    if exported is not None and not exported.startswith("models/"):
        header["models"] = [exported]
    licence = (
        f"`{metadata['license']}`, the model's (its card says why)"
        if metadata.get("license")
        else "the model's card does not state one; the code is MIT"
    )
    if embedded:
        what = (
            "the model embedded in the `poolingvq` package: PoolingVQ trained on EMOPIA with a log-mel audio front "
            "end and a small MIDI-BERT pre-trained without downloaded weights, on audio synthesized from MIDI. It "
            "has no Hub repository of its own, so the header lists no `models:`"
        )
    elif exported.startswith("models/"):
        what = f"the model folder `{exported}/`, copied into this Space"
    else:
        what = "a Hub model repo, downloaded when the Space starts"
    return f"""---
{yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip()}
---

# PoolingVQ: music emotion, and what the model hears

Model: **[{model_name}]({card_link})**, {what}. Its card gives its measured accuracy and limits.

Give a piece as audio (upload or microphone) and/or MIDI. The page shows:

- the four Russell quadrants with their scores (Q1 happy / excited, Q2 tense / angry, Q3 sad / depressed,
  Q4 calm / relaxed);
- the expected point on the valence-arousal plane: valence = P(Q1) + P(Q4) - P(Q2) - P(Q3),
  arousal = P(Q1) + P(Q2) - P(Q3) - P(Q4);
- a figure in the spirit of the paper's Fig. 2: the code of every audio frame over time, the rule that pooled
  each window (average, weighted average, max) and the sequence length before and after pooling;
- a piano roll of the MIDI (a MIDI file alone is enough: its audio is synthesized).

Example pieces (one per quadrant, one as audio + MIDI) are written by the project's code at start-up.

## Limits

- Uploads over 32 MB are refused before they reach the model; only the first 60 s of a piece are analysed (the
  paper's crop), and the page says when a piece was cut.
- A model trained on synthesized audio is less reliable on recordings of real instruments.
- A file the model cannot use (wrong type, corrupt, empty, silent...) shows a message naming the file and the
  problem; the Space keeps serving.

## Licence

{licence}.

## Why these files

This folder is written by `poolingvq export-space` and builds from itself. `poolingvq` is not on PyPI, so its code
rides along: `poolingvq/` holds the modules the app imports (the page is `poolingvq.demo`, which `poolingvq demo`
also runs). `requirements.txt` pins, from PyPI only, every package that code imports, at the versions it was tested
with (torch's PyPI wheel also runs on a CPU Space). Set the Space variable `POOLINGVQ_MODEL` to a Hub repo id to run
another model.
"""


def export_space_command(args: argparse.Namespace) -> int:
    """`poolingvq export-space DIR [--model NAME_OR_PATH] [--title TITLE]`."""
    files = export_space(args.folder, args.model, args.title)
    print(
        f"wrote a Space in {args.folder} ({len(files)} files): app.py, README.md, requirements.txt, poolingvq/"
    )
    print(
        f"try it: cd {args.folder} && python app.py; publish: hf upload ORG/NAME {args.folder} --repo-type space"
    )
    return 0


__all__ = ["export_space", "export_space_command", "pinned_requirements", "third_party_imports"]
