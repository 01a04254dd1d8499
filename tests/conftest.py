"""Test-session setup, read before any test module imports transformers."""

from __future__ import annotations

import os
import tempfile

# Under pytest-xdist each worker gets its own remote-code module cache, so two workers loading a saved model
# with trust_remote_code never write the same files at once; and one torch thread each, since two workers on two
# cores with two OpenMP threads apiece spin-wait on each other (small ops then run ~50x slower).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault(
        "HF_MODULES_CACHE", tempfile.mkdtemp(prefix=f"hf-modules-{os.environ['PYTEST_XDIST_WORKER']}-")
    )
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


import pytest  # noqa: E402  (after the environment above is set)


@pytest.fixture(scope="session")
def exported_space(tmp_path_factory):
    """The Hugging Face Space folder for the embedded model, as `poolingvq export-space DIR` writes it (a build
    output: the repository keeps no copy of it, so it can never be stale)."""
    from poolingvq.space import export_space

    folder = tmp_path_factory.mktemp("exported") / "space"
    export_space(folder)
    return folder
