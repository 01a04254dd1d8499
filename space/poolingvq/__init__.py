"""PoolingVQ: multimodal (audio + MIDI) music emotion recognition, Hugging Face Hub-native.

Importing the package registers the model, its processor and the `"music-emotion"` pipeline with transformers'
Auto classes and pipeline registry, so `pipeline("music-emotion", model=folder)` works in this process. The
registration waits until transformers is imported (`registration.py`), and the classes below are imported on first
use: `import poolingvq.cli` (every `poolingvq` command) does not pay seconds for torch and transformers.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from .errors_poolingvq import PoolingVQInputError
from .registration import register_when_transformers_is_imported

#: Public name -> the module that defines it, imported when the name is first used.
_LAZY_NAMES = {
    "QUADRANT_LABELS": "configuration_poolingvq",
    "QUADRANT_MEANINGS": "configuration_poolingvq",
    "LogMelConfig": "configuration_poolingvq",
    "MidiBertConfig": "configuration_poolingvq",
    "PoolingVQConfig": "configuration_poolingvq",
    "PoolingVQFeatureExtractor": "feature_extraction_poolingvq",
    "LogMelEncoder": "logmel_poolingvq",
    "MidiBertModel": "midibert_poolingvq",
    "MusicEmotionOutput": "modeling_poolingvq",
    "PoolingVQForMusicEmotion": "modeling_poolingvq",
    "MusicEmotionPipeline": "pipeline_music_emotion",
    "EMBEDDED_MODEL_DIR": "predict",
    "embedded_model_dir": "predict",
    "PoolingVQProcessor": "processing_poolingvq",
    "POOLING_RULES": "quantization_poolingvq",
    "PoolingVQQuantizer": "quantization_poolingvq",
    "CPMidiTokenizer": "tokenization_poolingvq",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:  # a submodule (`poolingvq.predict`), as an eager import used to leave it
        if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f".{name}", __name__)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))


register_when_transformers_is_imported()

__all__ = [
    "POOLING_RULES",
    "CPMidiTokenizer",
    "LogMelConfig",
    "LogMelEncoder",
    "MidiBertConfig",
    "MidiBertModel",
    "MusicEmotionOutput",
    "MusicEmotionPipeline",
    "PoolingVQConfig",
    "PoolingVQFeatureExtractor",
    "PoolingVQForMusicEmotion",
    "PoolingVQInputError",
    "PoolingVQProcessor",
    "PoolingVQQuantizer",
    "QUADRANT_LABELS",
    "QUADRANT_MEANINGS",
]
