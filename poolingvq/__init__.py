"""PoolingVQ: multimodal (audio + MIDI) music emotion recognition, Hugging Face Hub-native."""

from transformers import AutoConfig

from .configuration_poolingvq import QUADRANT_LABELS, QUADRANT_MEANINGS, MidiBertConfig, PoolingVQConfig
from .errors_poolingvq import PoolingVQInputError

AutoConfig.register(PoolingVQConfig.model_type, PoolingVQConfig, exist_ok=True)
AutoConfig.register(MidiBertConfig.model_type, MidiBertConfig, exist_ok=True)

__all__ = [
    "MidiBertConfig",
    "PoolingVQConfig",
    "PoolingVQInputError",
    "QUADRANT_LABELS",
    "QUADRANT_MEANINGS",
]
