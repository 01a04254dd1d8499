"""Registering PoolingVQ with transformers (its Auto classes, the `"music-emotion"` task) without importing
transformers first.

`import poolingvq` used to import torch and transformers in order to register, and every `poolingvq --help` paid
7 s for it. Registration matters only once transformers is in use, so it now runs then: at once when transformers
is already imported, else from an import hook the moment transformers is. Imports of this package's own modules
pass through the same hook for one reason: when transformers is first imported from inside one of them
(`configuration_poolingvq` imports it, and registering needs that very module, half-loaded at that moment), the
registration waits until the outermost of the package's modules being imported has finished.

Only the standard library is imported here.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

PACKAGE = __name__.rpartition(".")[0]
_lock = threading.Lock()
_started = False
#: Per thread, how many of the package's modules are executing (nested imports); another thread's half-loaded
#: module is not a problem, as its import lock makes this thread wait for it.
_depth = threading.local()


def register() -> None:
    """Register the config, models, processor and `"music-emotion"` pipeline with transformers, once per process."""
    global _started
    with _lock:  # not held while importing: another thread's import could be waiting on this one's
        if _started:
            return
        _started = True
    uninstall_hook()
    try:
        _register()
    except BaseException:
        with _lock:
            _started = False
        raise


def _register() -> None:
    from transformers import (
        AutoConfig,
        AutoFeatureExtractor,
        AutoModel,
        AutoModelForAudioClassification,
        AutoProcessor,
    )
    from transformers.pipelines import PIPELINE_REGISTRY

    from .configuration_poolingvq import MidiBertConfig, PoolingVQConfig
    from .feature_extraction_poolingvq import PoolingVQFeatureExtractor
    from .midibert_poolingvq import MidiBertModel
    from .modeling_poolingvq import PoolingVQForMusicEmotion
    from .pipeline_music_emotion import MusicEmotionPipeline
    from .predict import EMBEDDED_MODEL_DIR, embedded_model_dir
    from .processing_poolingvq import PoolingVQProcessor

    AutoConfig.register(PoolingVQConfig.model_type, PoolingVQConfig, exist_ok=True)
    AutoConfig.register(MidiBertConfig.model_type, MidiBertConfig, exist_ok=True)
    AutoModel.register(PoolingVQConfig, PoolingVQForMusicEmotion, exist_ok=True)
    AutoModel.register(MidiBertConfig, MidiBertModel, exist_ok=True)
    AutoModelForAudioClassification.register(PoolingVQConfig, PoolingVQForMusicEmotion, exist_ok=True)
    AutoFeatureExtractor.register(PoolingVQConfig, PoolingVQFeatureExtractor, exist_ok=True)
    AutoProcessor.register(PoolingVQConfig, PoolingVQProcessor, exist_ok=True)
    # `pipeline("music-emotion")` without a model runs the model shipped inside the package, when there is one.
    PIPELINE_REGISTRY.register_pipeline(
        "music-emotion",
        pipeline_class=MusicEmotionPipeline,
        pt_model=AutoModelForAudioClassification,
        default={"model": (str(EMBEDDED_MODEL_DIR), "main")} if embedded_model_dir() else None,
        type="multimodal",
    )


def register_when_transformers_is_imported() -> None:
    """Register now if transformers is imported, else install the hook that registers once it is."""
    if "transformers" in sys.modules:
        register()
        return
    with _lock:
        if _started or any(isinstance(finder, _Hook) for finder in sys.meta_path):
            return
        sys.meta_path.insert(0, _Hook())


def uninstall_hook() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _Hook)]


def _after_import(name: str) -> None:
    """Called when module `name` (transformers or one of the package's) has finished executing."""
    if getattr(_depth, "value", 0) == 0 and "transformers" in sys.modules:
        register()


class _Hook(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader the other finders give transformers and the package's modules."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if name != "transformers" and not name.startswith(PACKAGE + "."):
            return None
        for finder in sys.meta_path:
            if isinstance(finder, _Hook) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _WatchedLoader(spec.loader, counts=name != "transformers")
        return spec


class _WatchedLoader(importlib.abc.Loader):
    """The real loader, followed by `_after_import`; the module ends up with the real loader as its own."""

    def __init__(self, loader: Any, counts: bool) -> None:
        self.loader = loader
        self.counts = counts  # the package's modules count in the depth, transformers does not

    def __getattr__(
        self, name: str
    ) -> Any:  # get_code (runpy, `python -m`), get_source, get_resource_reader...
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        depth = getattr(_depth, "value", 0)
        _depth.value = depth + self.counts
        try:
            self.loader.exec_module(module)
        finally:
            _depth.value = depth
        _after_import(module.__name__)
