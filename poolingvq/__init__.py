"""PoolingVQ: multimodal (audio + MIDI) music emotion recognition, Hugging Face Hub-native.

Importing the package registers the model, its processor and the `"music-emotion"` pipeline with transformers'
Auto classes and pipeline registry, so `pipeline("music-emotion", model=folder)` works in this process.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
    AutoProcessor,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_poolingvq import (
    QUADRANT_LABELS,
    QUADRANT_MEANINGS,
    LogMelConfig,
    MidiBertConfig,
    PoolingVQConfig,
)
from .errors_poolingvq import PoolingVQInputError
from .feature_extraction_poolingvq import PoolingVQFeatureExtractor
from .logmel_poolingvq import LogMelEncoder
from .midibert_poolingvq import MidiBertModel
from .modeling_poolingvq import MusicEmotionOutput, PoolingVQForMusicEmotion
from .pipeline_music_emotion import MusicEmotionPipeline
from .predict import EMBEDDED_MODEL_DIR, embedded_model_dir
from .processing_poolingvq import PoolingVQProcessor
from .quantization_poolingvq import POOLING_RULES, PoolingVQQuantizer
from .tokenization_poolingvq import CPMidiTokenizer

AutoConfig.register(PoolingVQConfig.model_type, PoolingVQConfig, exist_ok=True)
AutoConfig.register(MidiBertConfig.model_type, MidiBertConfig, exist_ok=True)
AutoModel.register(PoolingVQConfig, PoolingVQForMusicEmotion, exist_ok=True)
AutoModel.register(MidiBertConfig, MidiBertModel, exist_ok=True)
AutoModelForAudioClassification.register(PoolingVQConfig, PoolingVQForMusicEmotion, exist_ok=True)
AutoFeatureExtractor.register(PoolingVQConfig, PoolingVQFeatureExtractor, exist_ok=True)
AutoProcessor.register(PoolingVQConfig, PoolingVQProcessor, exist_ok=True)
# `pipeline("music-emotion")` without a model runs the model shipped inside the package (issue 7), when there is one.
PIPELINE_REGISTRY.register_pipeline(
    "music-emotion",
    pipeline_class=MusicEmotionPipeline,
    pt_model=AutoModelForAudioClassification,
    default={"model": (str(EMBEDDED_MODEL_DIR), "main")} if embedded_model_dir() else None,
    type="multimodal",
)

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
