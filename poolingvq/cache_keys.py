"""Cache keys shared by every cache of synthesized audio and of features: one description of "the same audio".

Two caches hold audio synthesized from MIDI: the dataset builders' (`poolingvq.data`, FLAC files beside the
prepared data) and the feature cache's (`features.py`, the encoders' features of that audio). Both key an entry
by [`synthesis_settings`], so a change that alters the rendered samples (another soundfont, the retuning of its
root keys, the sustain pedal, symusic's version, velocity rendering) gives new keys in both, and neither serves
audio rendered under other settings.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from .errors_poolingvq import PoolingVQInputError
from .files_poolingvq import sha256_file


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal text, hence equal keys."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def key_of(parts: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of `parts`."""
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes; a missing or unreadable file is an input error naming it."""
    try:
        return sha256_file(path)
    except OSError as error:
        raise PoolingVQInputError(path, f"cannot be read ({error.strerror or error})") from error


def soundfont_sha256(path: str | os.PathLike) -> str:
    """[`file_sha256`] of a soundfont, computed once per (path, size, modification time): keying a thousand
    clips hashes the soundfont once, and a soundfont rewritten in place is hashed again."""
    try:
        stat = os.stat(path)
    except OSError as error:
        raise PoolingVQInputError(path, f"cannot be read ({error.strerror or error})") from error
    return _soundfont_sha256(os.fspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _soundfont_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def synthesis_settings(
    soundfont: str | os.PathLike | None = None, sustain_pedal: bool = True, level: str = "peak"
) -> dict[str, Any]:
    """Everything besides the MIDI, the rate and the crop that changes `synthesize_midi`'s samples (JSON-able).

    The soundfont enters by the SHA-256 of its bytes (None: the default General MIDI soundfont), so a renamed copy
    is the same soundfont. With `level="peak"` (the default) the level fields are left out, so keys written
    before velocity rendering existed stay valid.
    """
    # Imported here: the synthesizer's module loads symusic, which most users of keys never need.
    import symusic

    from .synthesis_poolingvq import (
        REFERENCE_RMS_DBFS,
        RETUNE_VERSION,
        SYNTHESIS_LEVELS,
        VELOCITY_RENDER_VERSION,
        default_soundfont_path,
    )

    if level not in SYNTHESIS_LEVELS:
        raise ValueError(f"level={level!r}: choose one of {SYNTHESIS_LEVELS}")
    settings: dict[str, Any] = {
        "soundfont_sha256": soundfont_sha256(soundfont or default_soundfont_path()),
        "retune_version": RETUNE_VERSION,
        "sustain_pedal": bool(sustain_pedal),
        "symusic": symusic.__version__,
    }
    if level != "peak":
        settings["level"] = level
        settings["reference_rms_dbfs"] = REFERENCE_RMS_DBFS
        settings["velocity_render_version"] = VELOCITY_RENDER_VERSION
    return settings


__all__ = ["canonical_json", "file_sha256", "key_of", "synthesis_settings"]
