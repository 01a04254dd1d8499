"""Hugging Face dataset builders for the music emotion datasets PoolingVQ is trained and evaluated on
(EMOPIA, VGMIDI), and the `poolingvq prepare-dataset` command that exports them for the Hub."""

from .common import DataProblem, MusicEmotionBuilder, MusicEmotionConfig
from .emopia import EmopiaBuilder
from .vgmidi import VgmidiBuilder

__all__ = ["DataProblem", "EmopiaBuilder", "MusicEmotionBuilder", "MusicEmotionConfig", "VgmidiBuilder"]
