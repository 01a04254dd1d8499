"""Where the reference data lives (`../shared/data` beside the repository), and the skip marker of tests that read it."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def needs_shared_data(subfolder: str = "") -> pytest.MarkDecorator:
    """Skip, saying why, where `../shared/data` (or its `subfolder`) is absent."""
    return pytest.mark.skipif(
        not (DATA_DIR / subfolder).exists(),
        reason=f"../shared/data{'/' + subfolder if subfolder else ''} (EMOPIA/VGMIDI/MIDI-BERT reference data) is absent",
    )


needs_data = needs_shared_data()
needs_emopia = needs_shared_data("emopia")
