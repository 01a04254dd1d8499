"""`poolingvq export-space`: the Space folder it writes (card YAML, pinned PyPI requirements, the code that rides
along) for the embedded model and for other models, and the proof that it builds: a fresh venv that installs
only its requirements.txt runs its app.py, which answers a gradio_client call with a label."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import venv
from pathlib import Path

import pytest
import torch
from huggingface_hub.repocard import metadata_load

from poolingvq import PoolingVQConfig, PoolingVQForMusicEmotion, PoolingVQProcessor
from poolingvq.examples import write_example_midi
from poolingvq.predict import embedded_model_dir
from poolingvq.space import export_space, third_party_imports

REPO = Path(__file__).resolve().parents[1]
needs_embedded = pytest.mark.skipif(embedded_model_dir() is None, reason="this version embeds no model")
#: A requirement line: a PyPI name and an exact version, nothing else (no URL, no index option, no path).
PINNED = re.compile(r"^[a-z0-9][a-z0-9-]*==[0-9][\w.]*$")


def listing(folder: Path) -> list[str]:
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )


@needs_embedded
def test_the_space_card_and_requirements(tmp_path):
    files = export_space(tmp_path / "space")
    space = tmp_path / "space"
    card = metadata_load(space / "README.md")
    assert card["sdk"] == "gradio" and card["app_file"] == "app.py" and (space / card["app_file"]).is_file()
    import gradio

    assert card["sdk_version"] == gradio.__version__  # the version the export was tested with
    assert card["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert "models" not in card  # the embedded model has no Hub id: the card names none it doesn't run
    requirements = [
        line for line in (space / "requirements.txt").read_text().splitlines() if not line.startswith("#")
    ]
    assert all(PINNED.match(line) for line in requirements), requirements  # PyPI only, pinned
    names = {line.split("==")[0] for line in requirements}
    assert "poolingvq" not in names  # not on PyPI: its code is in the folder
    assert {"torch", "transformers", "gradio", "matplotlib", "symusic", "pretty-midi"} <= names
    assert "torch==2.13.0" in requirements  # PyPI's wheel, without the local +cpu label
    # the page's code rides along, with the embedded model where the package looks for it
    assert {"poolingvq/__init__.py", "poolingvq/demo.py", "poolingvq/modeling_poolingvq.py"} <= set(files)
    assert "poolingvq/embedded/poolingvq-emopia/model.safetensors" in files
    assert not {"poolingvq/training.py", "poolingvq/features.py", "poolingvq/cli.py"} & set(
        files
    )  # not the app's
    text = (space / "README.md").read_text()
    assert "[poolingvq-emopia](poolingvq/embedded/poolingvq-emopia/README.md)" in text
    assert str(REPO) not in text and str(REPO) not in (space / "app.py").read_text()


def test_exports_for_a_local_folder_and_a_hub_repo(tmp_path):
    torch.manual_seed(0)
    config = PoolingVQConfig.from_preset("tiny")
    model = tmp_path / "my-model"
    PoolingVQForMusicEmotion(config).save_pretrained(model)
    PoolingVQProcessor.for_model(config).save_pretrained(model)
    (model / "README.md").write_text("---\nlicense: cc-by-nc-sa-4.0\n---\n# my model\n")
    (model / "checkpoints").mkdir()

    files = export_space(tmp_path / "local", str(model))
    assert "models/my-model/model.safetensors" in files and "models/my-model/README.md" in files
    assert not any("checkpoints" in name or "embedded" in name for name in files)
    card = metadata_load(tmp_path / "local" / "README.md")
    assert card["license"] == "cc-by-nc-sa-4.0" and "models" not in card
    assert "EXPORTED_MODEL = str(HERE / 'models/my-model')" in (tmp_path / "local" / "app.py").read_text()
    # its app offers that model alone (no untrained default beside it), named by its folder
    import gradio as gr

    spec = importlib.util.spec_from_file_location("exported_space_app", tmp_path / "local" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    menu = next(block for block in app.demo.blocks.values() if isinstance(block, gr.Dropdown))
    assert menu.choices == [("my-model", str(tmp_path / "local" / "models" / "my-model"))]

    files = export_space(tmp_path / "hub", "me/poolingvq-emopia")
    assert not any(name.startswith("models/") or "embedded" in name for name in files)
    card = metadata_load(tmp_path / "hub" / "README.md")
    assert card["models"] == ["me/poolingvq-emopia"]
    assert (
        "[me/poolingvq-emopia](https://huggingface.co/me/poolingvq-emopia)"
        in (tmp_path / "hub" / "README.md").read_text()
    )
    # exporting again replaces what an export writes, and only that
    (tmp_path / "hub" / "notes.txt").write_text("mine")
    export_space(tmp_path / "hub", str(model))
    assert (tmp_path / "hub" / "notes.txt").exists() and (tmp_path / "hub" / "models" / "my-model").is_dir()


def test_requirements_come_from_the_codes_imports():
    source = (
        "import os\nimport numpy as np\nfrom matplotlib.figure import Figure\nfrom . import sibling\n"
        "try:\n    import datasets\nexcept ImportError:\n    datasets = None\n"
        "def f():\n    import gradio\n    importlib.util.find_spec('pretty_midi')\n"
    )
    assert third_party_imports(source) == {"numpy", "matplotlib", "gradio", "pretty_midi"}


# ----------------------------------------------------------------------------------------------- a fresh venv


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, exported_space) -> Path:
    """A plain venv (no system site-packages) with only the Space's requirements.txt installed; skipped, saying
    why, only when no registry or mirror is reachable (a requirement that cannot be met fails)."""
    root = tmp_path_factory.mktemp("space-venv")
    requirements = exported_space / "requirements.txt"
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    try:
        result = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(
            "pip install -r requirements.txt of the exported Space took over 30 min: no package registry within reach"
        )
    if result.returncode != 0:
        errors = " | ".join([line for line in result.stderr.splitlines() if "ERROR" in line][-3:])
        # No registry within reach is this machine's limit: skip, saying so. Anything else (a pin that does not
        # exist, a conflict) is the Space's own fault, and a broken Space must fail the suite.
        unreachable = (
            "NewConnectionError",
            "Failed to establish a new connection",
            "Name or service not known",
        )
        if any(marker in result.stderr for marker in unreachable):
            pytest.skip(f"no package registry within reach to install the Space's requirements: {errors}")
        pytest.fail(f"the Space's requirements do not install in a fresh venv: {errors}")
    return python


@pytest.mark.slow
@needs_embedded
def test_a_fresh_venv_with_only_the_requirements_runs_the_space(fresh_venv, exported_space, tmp_path):
    space = tmp_path / "space"
    shutil.copytree(exported_space, space, ignore=shutil.ignore_patterns("__pycache__"))
    probe = subprocess.run(
        [str(fresh_venv), "-c", "import importlib.util, sys; print(importlib.util.find_spec('poolingvq'))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.stdout.strip() == "None"  # the venv has no poolingvq: the app runs the folder's own copy
    port = free_port()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))
    }
    environment.update(
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",  # the log says what happened up to a failure
    )
    log = tmp_path / "app.log"
    with log.open("w") as output:
        app = subprocess.Popen(
            [str(fresh_venv), "app.py"], cwd=space, env=environment, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        from gradio_client import Client, handle_file

        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 600
        while not answers(url):
            assert app.poll() is None, f"app.py exited with {app.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"app.py did not start:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        client = Client(url, verbose=False)
        midi = write_example_midi(tmp_path / "calm.mid", "Q4", seconds=6)
        label, *_, summary = client.predict(None, handle_file(str(midi)), "default", api_name="/predict")
        assert re.fullmatch(r"Q[1-4]: .+", label["label"])
        assert sum(c["confidence"] for c in label["confidences"]) == pytest.approx(1.0, abs=1e-5)
        assert "poolingvq-emopia" in summary and str(space) not in summary  # named, not a server path
    finally:
        app.terminate()
        app.wait(timeout=60)
