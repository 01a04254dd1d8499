"""`pipeline("music-emotion")`: audio and/or MIDI files -> Russell quadrants with scores.

Remote code: imports only torch, transformers and its siblings.

```python
from transformers import pipeline
classify = pipeline("music-emotion", model="path/to/model", trust_remote_code=True)
classify({"audio": "song.mp3", "midi": "song.mid"})
# [{'label': 'Q1', 'score': 0.71}, {'label': 'Q4', 'score': 0.16}, ...]
```

A MIDI-only input gets audio synthesized from it; an audio-only input works only for a model trained on audio
alone (the others need the notes). `return_details=True` adds what PoolingVQ did with the audio: the code of
every frame, the rule that pooled every window, and the lengths before and after pooling.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import Pipeline

from .errors_poolingvq import PoolingVQInputError
from .quantization_poolingvq import POOLING_RULES

MIDI_SUFFIXES = (".mid", ".midi", ".kar")
DETAIL_KEYS = ("codes", "window_rules", "audio_lengths", "pooled_lengths", "midi_lengths")


def split_input(inputs: Any) -> tuple[Any, Any]:
    """`{"audio": ..., "midi": ...}`, or a bare path (a MIDI by its suffix, else audio) -> (audio, midi)."""
    if isinstance(inputs, dict):
        unknown = set(inputs) - {"audio", "midi", "sampling_rate"}
        if unknown:
            raise PoolingVQInputError(
                inputs, f"unknown keys {sorted(unknown)}: use 'audio', 'midi', 'sampling_rate'"
            )
        return inputs.get("audio"), inputs.get("midi")
    if isinstance(inputs, (str, os.PathLike)) and os.fspath(inputs).lower().endswith(MIDI_SUFFIXES):
        return None, inputs
    return inputs, None


def conv_receptive_field(conv_kernel: list[int], conv_stride: list[int]) -> int:
    """Samples a stack of 1-D convolutions needs to give one output frame (400 for MERT's stack: 1/60 s)."""
    field, hop = 1, 1
    for kernel, stride in zip(conv_kernel, conv_stride, strict=True):
        field += (kernel - 1) * hop
        hop *= stride
    return field


class MusicEmotionPipeline(Pipeline):
    """Music emotion recognition with PoolingVQ: which Russell quadrant a piece belongs to.

    Call with `{"audio": ..., "midi": ...}` (paths, bytes; audio may also be an array with `"sampling_rate"`), a
    bare path, or a list of those (with `batch_size`).

    Args (at call time):
        top_k: how many quadrants to return, best first (default: all four; scores sum to 1).
        return_details: also return PoolingVQ's codes, window rules and lengths for each input.
    """

    _load_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError(
                "this model folder has no PoolingVQ processor: save one beside the model "
                "(PoolingVQProcessor(...).save_pretrained(folder))"
            )
        # batching pads waveforms with the feature extractor's padding value
        self.feature_extractor = self.processor.feature_extractor

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        """Classify one input or a list of them (a tuple counts as a list; an empty list gives `[]`)."""
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list) and not inputs:
            return []
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(
        self, top_k: int | None = None, return_details: bool | None = None, **kwargs: Any
    ) -> tuple[dict, dict, dict]:
        postprocess: dict[str, Any] = {}
        if top_k is not None:
            labels = self.model.config.num_labels
            if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= labels:
                raise ValueError(f"top_k must be an int in [1, {labels}], got {top_k!r}")
            postprocess["top_k"] = top_k
        if return_details is not None:
            postprocess["return_details"] = bool(return_details)
        return {}, {}, postprocess

    @property
    def modalities(self) -> str:
        return self.model.config.modalities

    def preprocess(self, inputs: Any) -> dict[str, torch.Tensor]:
        audio, midi = split_input(inputs)
        sampling_rate = inputs.get("sampling_rate") if isinstance(inputs, dict) else None
        if audio is None and midi is None:
            raise PoolingVQInputError(inputs, "no 'audio' and no 'midi' given")
        if self.modalities != "audio" and midi is None:
            raise PoolingVQInputError(
                audio,
                "this model reads the notes as well as the sound: a MIDI file is needed "
                "(call with {'audio': ..., 'midi': 'piece.mid'}, or give the MIDI alone and audio is synthesized)",
            )
        if self.modalities == "midi":
            audio = None
        if self.modalities == "audio":
            midi_for_tokens = None
        else:
            midi_for_tokens = midi
        if audio is None and self.modalities != "midi":
            batch = self.processor(midi=midi, synthesize_missing_audio=True)
            if midi_for_tokens is None:
                batch.pop("midi_input_ids")
                batch.pop("midi_attention_mask")
        else:
            batch = self.processor(audio=audio, midi=midi_for_tokens, sampling_rate=sampling_rate)
        if "attention_mask" in batch:
            self._check_audio_length(int(batch["attention_mask"].sum()), midi if audio is None else audio)
        return dict(batch)

    def _check_audio_length(self, samples: int, source: Any) -> None:
        """Refuse audio shorter than one encoder frame: MERT's conv stack would fail on it with a RuntimeError, and
        the log-mel front end would give a frame mostly made of padding."""
        audio_config = self.model.config.audio_config
        if hasattr(audio_config, "conv_kernel"):
            shortest = conv_receptive_field(audio_config.conv_kernel, audio_config.conv_stride)
        else:  # log-mel: one hop
            shortest = audio_config.hop_length
        if samples < shortest:
            rate = self.processor.sampling_rate
            raise PoolingVQInputError(
                source,
                f"the audio is too short: {samples} samples at {rate} Hz ({1000 * samples / rate:.1f} ms), "
                f"the audio encoder needs at least {shortest} ({1000 * shortest / rate:.1f} ms) for one frame",
            )

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        model = self.model
        feed: dict[str, torch.Tensor] = {}
        if "input_values" in model_inputs:
            feed["audio_features"], feed["audio_features_mask"] = self._audio_features(
                model_inputs["input_values"], model_inputs["attention_mask"]
            )
        if "midi_input_ids" in model_inputs:
            feed["midi_input_ids"] = model_inputs["midi_input_ids"]
            feed["midi_attention_mask"] = model_inputs["midi_attention_mask"]
        output = model(**feed)
        result = {"logits": output.logits}
        result.update({key: output[key] for key in DETAIL_KEYS if output.get(key) is not None})
        return result

    def _audio_features(
        self, waveforms: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The audio encoder's features, encoding together only clips of equal length.

        MERT normalises its first conv layer over time (group norm), so zero padding would change a shorter
        clip's features: clips are encoded unpadded, one call per distinct length (one call in all when the clips
        are cropped to the same 60 s), and the features padded afterwards.
        """
        lengths = mask.sum(-1)
        groups = [(int(length), (lengths == length).nonzero()[:, 0]) for length in lengths.unique()]
        encoded = {
            length: self.model.get_audio_features(waveforms[index, :length].to(self.model.dtype))
            for length, index in groups
        }
        frames = max(features.shape[1] for features, _ in encoded.values())
        first = next(iter(encoded.values()))[0]
        features = first.new_zeros(waveforms.shape[0], frames, first.shape[-1])
        features_mask = torch.zeros(waveforms.shape[0], frames, dtype=torch.bool, device=first.device)
        for length, index in groups:
            group_features, group_mask = encoded[length]
            features[index, : group_features.shape[1]] = group_features
            features_mask[index, : group_mask.shape[1]] = group_mask
        return features, features_mask

    def postprocess(
        self, model_outputs: dict[str, torch.Tensor], top_k: int | None = None, return_details: bool = False
    ) -> list[dict[str, Any]] | dict[str, Any]:
        logits = model_outputs["logits"][0].float()
        if not torch.isfinite(logits).all():
            raise RuntimeError("the model produced non-finite scores; its weights or inputs are broken")
        probabilities = logits.softmax(-1)
        order = probabilities.argsort(descending=True)[: top_k or len(probabilities)]
        id2label = self.model.config.id2label
        scores = [{"label": id2label[int(i)], "score": float(probabilities[i])} for i in order]
        if not return_details:
            return scores
        details: dict[str, Any] = {"scores": scores}
        if "codes" in model_outputs:
            frames = int(model_outputs["audio_lengths"][0])
            windows = int(model_outputs["pooled_lengths"][0])
            details["audio_frames"] = frames
            details["pooled_windows"] = windows
            details["frame_rate"] = float(self.model.config.audio_frame_rate)
            details["codes"] = model_outputs["codes"][0, :frames].tolist()
            rules = model_outputs.get("window_rules")
            if rules is not None:
                details["window_rules"] = [POOLING_RULES[int(r)] for r in rules[0, :windows]]
        elif "audio_lengths" in model_outputs:  # no quantization (pooling="none")
            details["audio_frames"] = details["pooled_windows"] = int(model_outputs["audio_lengths"][0])
        if "midi_lengths" in model_outputs:
            details["midi_tokens"] = int(model_outputs["midi_lengths"][0])
        return details


__all__ = ["MusicEmotionPipeline", "conv_receptive_field", "split_input"]
