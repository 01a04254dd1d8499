"""PoolingVQ: multimodal (audio + MIDI) music emotion recognition, Hugging Face Hub-native.

Importing the package registers the model with transformers' Auto classes.
"""

from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

from .configuration_poolingvq import QUADRANT_LABELS, QUADRANT_MEANINGS, MidiBertConfig, PoolingVQConfig
from .errors_poolingvq import PoolingVQInputError
from .midibert_poolingvq import MidiBertModel
from .modeling_poolingvq import MusicEmotionOutput, PoolingVQForMusicEmotion
from .quantization_poolingvq import POOLING_RULES, PoolingVQQuantizer

AutoConfig.register(PoolingVQConfig.model_type, PoolingVQConfig, exist_ok=True)
AutoConfig.register(MidiBertConfig.model_type, MidiBertConfig, exist_ok=True)
AutoModel.register(PoolingVQConfig, PoolingVQForMusicEmotion, exist_ok=True)
AutoModel.register(MidiBertConfig, MidiBertModel, exist_ok=True)
AutoModelForAudioClassification.register(PoolingVQConfig, PoolingVQForMusicEmotion, exist_ok=True)

__all__ = [
    "POOLING_RULES",
    "MidiBertConfig",
    "MidiBertModel",
    "MusicEmotionOutput",
    "PoolingVQConfig",
    "PoolingVQForMusicEmotion",
    "PoolingVQInputError",
    "PoolingVQQuantizer",
    "QUADRANT_LABELS",
    "QUADRANT_MEANINGS",
]
