"""Where each frozen encoder's weights came from, recorded in the model's config (`config.encoder_weights`).

The paper's model is only the paper's model with MERT's and MIDI-BERT's pre-trained weights; with random ones it
still trains, and quietly measures something else. So the weights' origin is written down where they are put in
(`import-weights`, `train --midi-encoder`, a preset's random initialisation) and travels with the model folder
in `config.json`; `train` refuses encoders that were never loaded, and the model card and `metrics.json` repeat
the record.

Each of `"audio"` and `"midi"` maps to one record:
- `{"kind": "pretrained", "weights": "MERT", "source": "m-a-p/MERT-v1-95M", "revision": "<commit>", ...}`;
- `{"kind": "random", "seed": 0}`: initialised here, never trained;
- `{"kind": "none"}`: no learned weights (the log-mel front end), nothing to load;
- `{"kind": "unknown"}`: a folder saved before records existed (treated as not loaded: say so, or re-import).

It is a free-form attribute of the config (not one of `PoolingVQConfig`'s declared fields): transformers saves
and loads such attributes as they are, and older folders simply lack it.
"""

from __future__ import annotations

from typing import Any

#: The config attribute that holds the records.
ATTRIBUTE = "encoder_weights"
ENCODERS = ("audio", "midi")
#: Encoder records that mean "these weights were never loaded from anywhere".
NOT_LOADED = ("random", "unknown")


def pretrained(weights: str, via: str, **source: Any) -> dict[str, Any]:
    """The record of pre-trained `weights` (e.g. "MERT") put in by `via` (e.g. "import-weights"), from `source`
    (see `hub.source_record`)."""
    return {"kind": "pretrained", "weights": weights, "via": via, **source}


def random_weights(seed: int) -> dict[str, Any]:
    return {"kind": "random", "seed": seed}


def encoder_weights(config: Any) -> dict[str, dict[str, Any]]:
    """The record of each encoder of a `PoolingVQConfig`; a log-mel front end is always `{"kind": "none"}`."""
    recorded = getattr(config, ATTRIBUTE, None) or {}
    records = {name: dict(recorded.get(name) or {"kind": "unknown"}) for name in ENCODERS}
    if config.audio_encoder_kind == "logmel":
        records["audio"] = {"kind": "none", "weights": "log-mel front end (no learned weights)"}
    return records


def set_encoder_weights(config: Any, **records: dict[str, Any]) -> None:
    """Record where the given encoders' weights came from (the others keep their record)."""
    current = {
        name: record for name, record in encoder_weights(config).items() if record["kind"] != "unknown"
    }
    current.update(records)
    setattr(config, ATTRIBUTE, current)


def used_encoders(config: Any) -> tuple[str, ...]:
    """The encoders the model's modalities read (both are built, whatever the modalities)."""
    return {"audio": ("audio",), "midi": ("midi",)}.get(config.modalities, ENCODERS)


def encoders_not_loaded(config: Any) -> list[str]:
    """The used encoders whose weights were never loaded from pre-trained ones (random or unrecorded)."""
    records = encoder_weights(config)
    return [name for name in used_encoders(config) if records[name]["kind"] in NOT_LOADED]


def describe(record: dict[str, Any]) -> str:
    """One record in words, for the model card."""
    kind = record.get("kind")
    if kind == "pretrained":
        revision = f" at revision `{record['revision']}`" if record.get("revision") else ""
        via = f" (via {record['via']})" if record.get("via") else ""
        return f"{record.get('weights', 'pre-trained weights')} from `{record.get('source')}`{revision}{via}"
    if kind == "random":
        return f"random, untrained weights (seed {record.get('seed')})"
    if kind == "none":
        return record.get("weights", "no learned weights")
    return "weights of unrecorded origin (a folder saved before origins were recorded)"


__all__ = [
    "ATTRIBUTE",
    "describe",
    "encoder_weights",
    "encoders_not_loaded",
    "pretrained",
    "random_weights",
    "set_encoder_weights",
    "used_encoders",
]
