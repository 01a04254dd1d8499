"""`pipeline("music-emotion")`: audio and/or MIDI files -> Russell quadrants with scores.

Remote code: imports only torch, transformers and its siblings.

```python
from transformers import pipeline
classify = pipeline("music-emotion", model="path/to/model", trust_remote_code=True)
classify({"audio": "song.mp3", "midi": "song.mid"})
# [{'label': 'Q1', 'score': 0.71}, {'label': 'Q4', 'score': 0.16}, ...]
```

Inputs are what transformers' audio-classification pipeline takes, plus MIDI: a path, an http(s) URL, bytes, a
numpy array or torch tensor at the processor's rate, `{"raw" | "array": samples, "sampling_rate": rate}`, a datasets
`Audio` value (decoded `{"array", "sampling_rate"}` or undecoded `{"path", "bytes"}`), or `{"audio": one of those,
"midi": a path, URL or bytes}`.

A MIDI-only input gets audio synthesized from it. A recording alone gets its notes transcribed (basic-pitch,
when installed: `transcribe`), or, without a transcriber, is read as audio alone by a model that answers without
MIDI (trained with `modality_dropout`, as the embedded default is, or on audio alone).
`return_details=True` adds what the model heard (`"heard"`) and what PoolingVQ did with the audio: the code of
every frame, the rule that pooled every window, and the lengths before and after pooling.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import torch
from transformers import Pipeline

from .configuration_poolingvq import conv_receptive_field
from .errors_poolingvq import PoolingVQInputError
from .quantization_poolingvq import POOLING_RULES
from .tokenization_poolingvq import MIDI_SUFFIXES
from .transcription_poolingvq import INSTALL_HINT, TRANSCRIBER, transcription_available

DETAIL_KEYS = ("codes", "window_rules", "audio_lengths", "pooled_lengths", "midi_lengths")


#: The keys of a multimodal input, and those of the audio dicts of transformers' audio-classification pipeline
#: (`raw` or `array` with `sampling_rate`) and of a datasets `Audio` value (`path` and `bytes` when undecoded).
PIECE_KEYS = frozenset({"audio", "midi", "sampling_rate"})
ARRAY_KEYS = ("raw", "array")
#: A download larger than this is refused before it is read to the end (the model reads at most the first 60 s).
MAX_DOWNLOAD_BYTES = 100 * 2**20
#: Seconds a download may wait for the server (to connect, and between two reads) before it is given up.
DOWNLOAD_TIMEOUT_SECONDS = 30.0


class DownloadedBytes(bytes):
    """A downloaded file's bytes that remember their URL, so an error about them names the URL, not a size."""

    origin: str


def is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def download(url: str) -> DownloadedBytes:
    """The body at `url`, read whole; refused when larger than `MAX_DOWNLOAD_BYTES` (said by its Content-Length or
    found while reading), when the server stalls for `DOWNLOAD_TIMEOUT_SECONDS`, or on an HTTP error."""
    limit = MAX_DOWNLOAD_BYTES
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
            announced = response.headers.get("Content-Length")
            if announced is not None and announced.isdigit() and int(announced) > limit:
                raise PoolingVQInputError(
                    url, f"the download is {int(announced)} bytes, over the {limit}-byte limit"
                )
            body = response.read(limit + 1)
    except urllib.error.HTTPError as error:
        raise PoolingVQInputError(url, f"the download failed: HTTP {error.code} {error.reason}") from error
    except (
        urllib.error.URLError,
        OSError,
    ) as error:  # refused, unknown host, timed out (TimeoutError is an OSError)
        reason = getattr(error, "reason", error)
        raise PoolingVQInputError(url, f"the download failed: {reason}") from error
    if len(body) > limit:
        raise PoolingVQInputError(url, f"the download is over the {limit}-byte limit")
    data = DownloadedBytes(body)
    data.origin = url
    return data


def decoded_audio(value: Any) -> dict[str, Any] | None:
    """A torchcodec `AudioDecoder` (what datasets' `Audio` feature decodes to) as `{"array", "sampling_rate"}`;
    None for anything else. torchcodec is only looked up, never imported: a decoder means it is loaded."""
    torchcodec = sys.modules.get("torchcodec")
    decoders = getattr(torchcodec, "decoders", None)
    if decoders is None or not isinstance(value, decoders.AudioDecoder):
        return None
    samples = value.get_all_samples()
    return {"array": samples.data, "sampling_rate": samples.sample_rate}


def parse_audio(audio: Any, sampling_rate: int | None) -> tuple[Any, int | None]:
    """One audio value -> (path, bytes, array or tensor; its sampling rate or None), for the processor.

    Dicts are audio-classification's `{"raw" | "array", "sampling_rate"}` or a datasets `Audio` value; a URL is
    downloaded. A rate given both inside the dict and beside it must agree.
    """
    audio = decoded_audio(audio) or audio
    if isinstance(audio, dict):
        keys = set(audio)
        array_key = next((key for key in ARRAY_KEYS if key in audio), None)
        if array_key is not None:
            if "sampling_rate" not in audio:
                raise PoolingVQInputError(
                    audio[array_key], f"an audio dict with {array_key!r} needs its 'sampling_rate'"
                )
            inner_rate = audio["sampling_rate"]
            if sampling_rate is not None and sampling_rate != inner_rate:
                raise PoolingVQInputError(
                    audio[array_key],
                    f"two sampling rates: {inner_rate} in the audio dict and {sampling_rate} beside it",
                )
            return audio[array_key], inner_rate
        if keys and keys <= {"path", "bytes"}:  # a datasets Audio value, not decoded
            if audio.get("bytes") is not None:
                return parse_audio(audio["bytes"], None)[0], None
            if audio.get("path") is not None:
                return parse_audio(audio["path"], None)[0], None
            raise PoolingVQInputError(audio, "an audio dict whose 'path' and 'bytes' are both empty")
        raise PoolingVQInputError(
            audio,
            f"unknown keys {sorted(map(str, keys))}: a piece is {{'audio', 'midi', 'sampling_rate'}}, audio alone "
            "{'raw' or 'array': samples, 'sampling_rate': rate} or a datasets Audio value {'path', 'bytes'}",
        )
    if is_url(audio):
        return download(audio), None
    return audio, sampling_rate


def parse_midi(midi: Any) -> Any:
    """One MIDI value -> a path, bytes or score for the tokenizer (a URL is downloaded)."""
    return download(midi) if is_url(midi) else midi


def is_midi_name(value: Any) -> bool:
    """A path or URL that names a MIDI file by its suffix (a URL's query and fragment left aside)."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    name = os.fspath(value)
    if is_url(name):
        name = urllib.parse.urlsplit(name).path
    return name.lower().endswith(MIDI_SUFFIXES)


def parse_input(inputs: Any, model_sampling_rate: int | None = None) -> tuple[Any, Any, int | None]:
    """One pipeline input -> (audio, midi, sampling rate of an audio array), each None when absent.

    `{"audio": ..., "midi": ..., "sampling_rate": ...}` is a piece; any other dict is audio alone (see
    `parse_audio`); a bare path or URL is a MIDI by its suffix, else audio; a bare array or tensor is audio at the
    model's rate, as audio-classification takes it (inside a piece dict, an array needs its `sampling_rate`).
    """
    if isinstance(inputs, dict) and (inputs.keys() & {"audio", "midi"}):
        unknown = set(inputs) - PIECE_KEYS
        if unknown:
            raise PoolingVQInputError(
                inputs, f"unknown keys {sorted(map(str, unknown))}: use 'audio', 'midi', 'sampling_rate'"
            )
        audio, sampling_rate = inputs.get("audio"), inputs.get("sampling_rate")
        if audio is not None:
            audio, sampling_rate = parse_audio(audio, sampling_rate)
        midi = inputs.get("midi")
        return audio, None if midi is None else parse_midi(midi), sampling_rate
    if is_midi_name(inputs):
        return None, parse_midi(inputs), None
    if hasattr(inputs, "shape") and not isinstance(inputs, dict):  # numpy array or torch tensor
        return inputs, None, model_sampling_rate
    audio, sampling_rate = parse_audio(inputs, None)
    return audio, None, sampling_rate


def gives_midi(inputs: Any) -> bool:
    """Whether one input carries a MIDI (a piece dict with `"midi"`, or a path / URL named as a MIDI file), read
    without parsing or downloading anything."""
    if isinstance(inputs, dict):
        return inputs.get("midi") is not None
    return is_midi_name(inputs)


def split_input(inputs: Any) -> tuple[Any, Any]:
    """(audio, midi) of one input, as `parse_input` reads it (kept for callers of earlier versions)."""
    audio, midi, _ = parse_input(inputs)
    return audio, midi


def heard(model_outputs: dict[str, torch.Tensor]) -> str:
    """What the model answered from, in words: "audio and MIDI", "MIDI, with audio synthesized from it", "audio,
    with MIDI transcribed from the recording (...)", "audio only (no MIDI)", "MIDI only" or "MIDI transcribed from
    the recording (...)"."""
    audio = "audio_lengths" in model_outputs or "codes" in model_outputs
    midi = "midi_lengths" in model_outputs
    synthesized = (
        bool(model_outputs["audio_synthesized"][0]) if "audio_synthesized" in model_outputs else False
    )
    transcribed = bool(model_outputs["midi_transcribed"][0]) if "midi_transcribed" in model_outputs else False
    if transcribed:
        return f"{'audio, with ' if audio else ''}MIDI transcribed from the recording ({TRANSCRIBER})"
    if audio and midi:
        return "MIDI, with audio synthesized from it" if synthesized else "audio and MIDI"
    return "audio only (no MIDI)" if audio else "MIDI only"


class MusicEmotionPipeline(Pipeline):
    """Music emotion recognition with PoolingVQ: which Russell quadrant a piece belongs to.

    Call with `{"audio": ..., "midi": ...}` (paths, URLs, bytes; audio may also be an array with `"sampling_rate"`
    or an audio dict), any input of transformers' audio-classification pipeline, a bare MIDI path or URL, or a list
    of those (with `batch_size`). An argument it does not know raises a `TypeError`.

    Args (at call time):
        top_k: how many quadrants to return, best first (default: all four; scores sum to 1).
        return_details: also return PoolingVQ's codes, window rules and lengths for each input.
        transcribe: what to do with a recording given without its MIDI, for a model that reads MIDI. `None` (the
            default): transcribe its notes when basic-pitch is installed, else read the audio alone (a model
            trained with `modality_dropout`). `True`: transcribe (an `ImportError` says how to install
            basic-pitch). `False`: read the audio alone. `return_details` says which was done (`"heard"`).
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
        model_rate = self.model.config.audio_sampling_rate
        if (
            self.processor.sampling_rate != model_rate
        ):  # every frame would be read at the wrong speed, silently
            raise ValueError(
                f"the processor resamples audio to {self.processor.sampling_rate} Hz, but the model's audio encoder "
                f"reads {model_rate} Hz: save the processor made for this model (PoolingVQProcessor.for_model(config))"
            )

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        """Classify one input or a list of them (a tuple counts as a list; an empty list gives `[]`)."""
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list) and not inputs:
            return []
        if (
            isinstance(inputs, list)
            and self.modalities == "audio+midi"
            and not self._transcribes(kwargs.get("transcribe"))
            and len({gives_midi(item) for item in inputs}) > 1
        ):
            # a recording alone has no MIDI tokens to pad: such pieces cannot share a batch with pieces that have them
            kwargs["batch_size"] = 1
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        return_details: bool | None = None,
        transcribe: bool | None = None,
        **kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        if kwargs:  # a misspelt option (`topk=1`) would otherwise be dropped without a word
            raise TypeError(
                f"unknown argument(s) {', '.join(sorted(kwargs))} for the music-emotion pipeline; it takes "
                "top_k, return_details, transcribe, batch_size and num_workers"
            )
        preprocess: dict[str, Any] = {}
        if transcribe is not None:
            if not isinstance(transcribe, bool):
                raise ValueError(f"transcribe must be True, False or None, got {transcribe!r}")
            if transcribe and not transcription_available():
                raise ImportError(INSTALL_HINT)
            preprocess["transcribe"] = transcribe
        postprocess: dict[str, Any] = {}
        if top_k is not None:
            labels = self.model.config.num_labels
            if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= labels:
                raise ValueError(f"top_k must be an int in [1, {labels}], got {top_k!r}")
            postprocess["top_k"] = top_k
        if return_details is not None:
            postprocess["return_details"] = bool(return_details)
        return preprocess, {}, postprocess

    @property
    def modalities(self) -> str:
        return self.model.config.modalities

    def _transcribes(self, transcribe: bool | None) -> bool:
        """Whether a recording given without its MIDI gets its notes transcribed (see the class's `transcribe`)."""
        if self.modalities == "audio":
            return False
        return transcription_available() if transcribe is None else transcribe

    def preprocess(self, inputs: Any, transcribe: bool | None = None) -> dict[str, torch.Tensor]:
        audio, midi, sampling_rate = parse_input(inputs, self.processor.sampling_rate)
        if audio is None and midi is None:
            raise PoolingVQInputError(inputs, "no 'audio' and no 'midi' given")
        transcribing = midi is None and self._transcribes(transcribe)
        if (
            self.modalities != "audio"
            and midi is None
            and not transcribing
            and not self.model.config.accepts_missing_modality
        ):
            raise PoolingVQInputError(
                audio,
                "this model reads the notes as well as the sound: a MIDI file is needed "
                "(call with {'audio': ..., 'midi': 'piece.mid'}, or give the MIDI alone and audio is synthesized, "
                f"or install a transcriber: {INSTALL_HINT})",
            )
        if self.modalities == "midi" and not transcribing:
            audio = None
        if self.modalities == "audio":
            midi_for_tokens = None
        else:
            midi_for_tokens = midi
        if audio is None and self.modalities != "midi":
            batch = self.processor(midi=midi, synthesize_missing_audio=True)
            if midi_for_tokens is None:
                for key in ("midi_input_ids", "midi_attention_mask", "midi_statistics"):
                    batch.pop(key, None)
        else:
            batch = self.processor(
                audio=audio,
                midi=midi_for_tokens,
                sampling_rate=sampling_rate,
                transcribe_missing_midi=transcribing,
            )
            if self.modalities == "midi":  # the recording was read for its transcription only
                batch.pop("input_values", None)
                batch.pop("attention_mask", None)
        if "attention_mask" in batch:
            self._check_audio_length(int(batch["attention_mask"].sum()), midi if audio is None else audio)
        inputs_used = dict(batch)
        # what the model heard, for `return_details` (a [1] tensor, so batches of pieces collate)
        inputs_used["audio_synthesized"] = torch.tensor([audio is None and "input_values" in batch])
        inputs_used["midi_transcribed"] = torch.tensor([transcribing])
        return inputs_used

    def _check_audio_length(self, samples: int, source: Any) -> None:
        """Refuse audio shorter than one encoder frame: MERT's conv stack would fail on it with a RuntimeError, and
        the log-mel front end would give a frame mostly made of padding."""
        shortest = self.model.config.audio_min_samples
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
            # the model's one path from waveforms to features, which the feature cache takes too
            feed["audio_features"], feed["audio_features_mask"] = model.encode_audio(
                model_inputs["input_values"], model_inputs["attention_mask"]
            )
        if "midi_input_ids" in model_inputs:
            feed["midi_features"], feed["midi_features_mask"] = model.encode_midi(
                model_inputs["midi_input_ids"], model_inputs["midi_attention_mask"]
            )
            if "midi_statistics" in model_inputs:
                feed["midi_statistics"] = model_inputs["midi_statistics"]
        output = model(**feed)
        result = {
            "logits": output.logits,
            "audio_synthesized": model_inputs["audio_synthesized"],
            "midi_transcribed": model_inputs["midi_transcribed"],
        }
        result.update({key: output[key] for key in DETAIL_KEYS if output.get(key) is not None})
        return result

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
        details: dict[str, Any] = {"scores": scores, "heard": heard(model_outputs)}
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


__all__ = [
    "MusicEmotionPipeline",
    "conv_receptive_field",
    "gives_midi",
    "heard",
    "parse_input",
    "split_input",
]
