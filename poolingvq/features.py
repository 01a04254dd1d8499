"""The frozen-feature cache: MERT and MIDI-BERT run once per clip, training reads their features from disk.

Both encoders are frozen, so the features of a clip never change while the fusion and the head train: they are
computed once by [`extract_features`] and stored, fp16, one safetensors file per clip, under a key that hashes
everything the features depend on:

- the encoders: their weights (names, dtypes, shapes, bytes), their configs and the feature-selection fields
  `audio_feature_layers` / `midi_feature_layer` ([`encoder_fingerprint`]);
- the preprocessing: sampling rate, crop, normalisation, tokenizer mode and row length, MIDI rows kept, and
  for clips without a recording the synthesis (soundfont bytes, pedal, synthesizer version)
  ([`preprocessing_settings`]);
- the inputs: the sha256 of the MIDI file's bytes, and of the audio file's bytes when there is one.

A changed input, setting or model therefore gets a new key and never reuses stale features; the same bytes
under another name or path share an entry. Nothing about the trained parts (codebook, fusion, head) enters the
key: one cache serves every ablation that shares the frozen encoders.

Crash safety. An entry is written by the package's one atomic writer (`files_poolingvq.atomic_write_bytes`): to
a temporary file in its own folder, fsync'ed, then renamed over the final name (`os.replace` is atomic), so a
reader sees a whole entry or none. A run killed with SIGKILL leaves at
most one temporary file per process, named with its writer's pid and host; the next run removes those whose
writer is gone and recomputes only the clips without an entry. Entries carry a CRC-32 of their tensors: a
truncated file fails safetensors' own header check (`key in cache`), a damaged one the checksum (`cache.get`);
either is logged, deleted and treated as missing. Extraction reads every entry it finds in full
(`cache.verify`), so a damaged entry is recomputed there, before training needs it.

Layout: `root/ab/abcdef....safetensors` (the first two hex digits fan the entries out over 256 folders),
holding `audio` [T, D] fp16 (T frames at 75/s), `midi` [L, D] fp16 (L real CP tokens) and string metadata: the
clip's id, where its audio came from, its MIDI row count, the key's parts (JSON) and the checksum.

Long MIDI. MIDI-BERT reads rows of 512 tokens (its relative positions span no more), while the fusion reads
one token sequence per piece. The first `max_midi_rows` rows (default 1, the row MIDI-BERT's own EMOPIA
fine-tuning classified) are encoded row by row and their real tokens concatenated into one [L, D] sequence;
the fusion has no position embedding, so it reads a longer sequence as it reads a shorter one.

One path. Features are computed by the model's `encode_audio` and `encode_midi`, the same calls the pipeline
makes, on the same inputs (the processor's feature extractor and tokenizer, the kept MIDI rows joined as the
processor joins them): what training reads is what the pipeline computes for the same file. `encode_audio`
encodes only clips of exactly the same length together when padding would change their features (MERT's
group-normalised conv front end normalises over the whole padded input: `config.audio_padding_changes_features`;
60-s crops all share one pass) and pads otherwise (log-mel). `encode_midi` batches MIDI rows, cut to the
batch's longest real row: padding is masked and MIDI-BERT's positions are relative, so the cut changes nothing
but the cost.

Training then reads the cache through [`CachedFeatureDataset`] and [`collate_cached_features`], whose batches
are exactly the feature keyword arguments of `PoolingVQForMusicEmotion.forward`, and starts the codebook from
a seeded random half of the training clips with [`init_codebook_from_cache`]. A run that trains the MIDI encoder
with the head (`PoolingVQConfig.finetune_midi_encoder`) cannot read cached MIDI features: its batches carry the
clips' CP tokens instead (`midi_token_sequences`, tokenized as extraction tokenizes them),
beside the cached audio features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as safetensors_bytes
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from . import files_poolingvq
from .cache_keys import canonical_json, file_sha256, key_of, synthesis_settings
from .configuration_poolingvq import PoolingVQConfig
from .errors_poolingvq import PoolingVQInputError
from .feature_extraction_poolingvq import PoolingVQFeatureExtractor, load_audio
from .modeling_poolingvq import FeatureStandardization, PoolingVQForMusicEmotion
from .quantization_poolingvq import PoolingVQQuantizer
from .synthesis_poolingvq import synthesize_midi
from .tokenization_poolingvq import PAD_TOKEN, CPMidiTokenizer, join_rows

logger = logging.getLogger(__name__)

#: Enters every key and every entry: bump it when what an entry holds, or how it is computed, changes.
CACHE_FORMAT = "poolingvq-features/1"
#: Config fields that say how a config was saved or what a head outputs, not what the encoder computes.
CONFIG_FIELDS_WITHOUT_EFFECT = frozenset(
    {
        "transformers_version",
        "architectures",
        "dtype",  # the weights' dtypes are hashed themselves
        "output_hidden_states",
        "output_attentions",
        "return_dict",
        "id2label",
        "label2id",
        "problem_type",
        "auto_map",
    }
)
#: A temporary file whose writer is on another host cannot be checked for liveness; after this long it is
#: certainly abandoned (one entry takes well under a second to write).
ORPHANED_TEMP_FILE_SECONDS = files_poolingvq.ORPHANED_TEMP_FILE_SECONDS
#: What `synthesis_kwargs` may set; the rate and the crop always come from the feature extractor.
SYNTHESIS_OPTIONS = frozenset({"soundfont", "sustain_pedal", "level"})
_ENTRY_SUFFIX = ".safetensors"
_HOST = files_poolingvq.HOST


class ClipFailure(NamedTuple):
    """A clip whose features could not be computed, and why (usually a `PoolingVQInputError` message).

    `key` is None when the clip's files could not even be read.
    """

    clip_id: str
    key: str | None
    message: str


# --------------------------------------------------------------------------------------------------- keys


def encoder_fingerprint(model: PoolingVQForMusicEmotion) -> str:
    """sha256 (hex) of everything the cached features depend on inside the model.

    Hashes, for the audio and the MIDI encoder, every state-dict entry's name, dtype, shape and bytes, and the
    encoder's config (without `CONFIG_FIELDS_WITHOUT_EFFECT` and private fields), plus the model config's
    `audio_feature_layers` and `midi_feature_layer`. Takes about 0.5 s for MERT-95M + MIDI-BERT on a CPU.
    """
    digest = hashlib.sha256(CACHE_FORMAT.encode())
    config = model.config
    selection = {
        "audio_feature_layers": config.audio_feature_layers,
        "midi_feature_layer": config.midi_feature_layer,
    }
    digest.update(canonical_json(selection).encode())
    for name, encoder in (("audio", model.audio_encoder), ("midi", model.midi_encoder)):
        encoder_config = {
            field_name: value
            for field_name, value in encoder.config.to_dict().items()
            if field_name not in CONFIG_FIELDS_WITHOUT_EFFECT and not field_name.startswith("_")
        }
        digest.update(canonical_json({name: encoder_config}).encode())
        for tensor_name, tensor in encoder.state_dict().items():
            header = f"{name}.{tensor_name}|{tensor.dtype}|{tuple(tensor.shape)}"
            digest.update(header.encode())
            digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


def preprocessing_settings(
    feature_extractor: PoolingVQFeatureExtractor,
    tokenizer: CPMidiTokenizer,
    max_midi_rows: int = 1,
    synthesis_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The preprocessing settings that enter the keys: JSON-able dicts `"audio"`, `"midi"`, `"synthesis"`.

    Args:
        feature_extractor: its rate, crop and normalisation.
        tokenizer: its mode and row length.
        max_midi_rows: MIDI rows of `tokenizer.max_length` tokens kept per clip.
        synthesis_kwargs: `soundfont` (a path; None: the default GM soundfont) and `sustain_pedal` for
            [`synthesize_midi`]. The soundfont enters by the sha256 of its bytes, so a renamed copy is the
            same soundfont. `None` leaves synthesis out (every clip must then have its own audio).
    """
    if isinstance(max_midi_rows, bool) or not isinstance(max_midi_rows, int) or max_midi_rows < 1:
        raise ValueError(f"max_midi_rows must be a positive int, got {max_midi_rows!r}")
    settings: dict[str, Any] = {
        "audio": {
            "feature_extractor": type(feature_extractor).__name__,
            "sampling_rate": int(feature_extractor.sampling_rate),
            "max_seconds": feature_extractor.max_seconds,
            "do_normalize": bool(feature_extractor.do_normalize),
        },
        "midi": {"tokenizer": type(tokenizer).__name__, **tokenizer.to_dict(), "max_rows": max_midi_rows},
    }
    if synthesis_kwargs is not None:
        unknown = set(synthesis_kwargs) - SYNTHESIS_OPTIONS
        if unknown:
            raise ValueError(
                f"synthesis_kwargs may set {sorted(SYNTHESIS_OPTIONS)}, not {sorted(unknown)} (the rate and "
                "the crop come from the feature extractor)"
            )
        # The same description the dataset builders key their synthesized audio by (cache_keys.py).
        settings["synthesis"] = synthesis_settings(
            synthesis_kwargs.get("soundfont"),
            sustain_pedal=synthesis_kwargs.get("sustain_pedal", True),
            level=synthesis_kwargs.get("level", "peak"),
        )
    return settings


def clip_key(clip: Mapping[str, Any], fingerprint: str, settings: Mapping[str, Any]) -> str:
    """The cache key (sha256 hex) of a clip's features: the hash of [`clip_key_parts`]."""
    return key_of(clip_key_parts(clip, fingerprint, settings))


def clip_key_parts(clip: Mapping[str, Any], fingerprint: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a clip's features depend on: format, encoders, preprocessing, content hashes (JSON-able).

    The synthesis settings enter only for a clip without `audio_path`, so a new soundfont leaves the entries
    of clips with real recordings valid. The clip's id and paths do not enter: only its bytes do.
    """
    parts: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "encoders": fingerprint,
        "audio": settings["audio"],
        "midi": settings["midi"],
        "midi_sha256": file_sha256(clip["midi_path"]),
    }
    if clip.get("audio_path") is not None:
        parts["audio_sha256"] = file_sha256(clip["audio_path"])
    elif "synthesis" in settings:
        parts["synthesis"] = settings["synthesis"]
    else:
        raise ValueError(f"clip {clip.get('id')!r} has no audio_path and the settings have no synthesis")
    return parts


def _tensor_bytes(tensor: torch.Tensor) -> np.ndarray:
    """The raw bytes of a tensor as a uint8 array (any dtype, bfloat16 included, any device)."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


# -------------------------------------------------------------------------------------------------- cache


@dataclass
class CacheEntry:
    """One clip's cached features: `tensors` (`audio` [T, D], `midi` [L, D], fp16) and string `metadata`."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]

    @property
    def audio(self) -> torch.Tensor:
        return self.tensors["audio"]

    @property
    def midi(self) -> torch.Tensor:
        return self.tensors["midi"]


class FeatureCache:
    """A folder of feature entries, one safetensors file per key (see the module docstring).

    Safe to share between processes and runs: writes are atomic, reads never see half an entry, and a damaged
    entry is deleted and reported missing so that the next extraction recomputes it.

    Args:
        root: the cache folder (created if needed).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """Where the entry of `key` (lowercase hex, at least 3 digits) lives."""
        if len(key) < 3 or not all(character in "0123456789abcdef" for character in key):
            raise ValueError(f"a cache key is lowercase hex of at least 3 digits, got {key!r}")
        return self.root / key[:2] / f"{key}{_ENTRY_SUFFIX}"

    def __contains__(self, key: object) -> bool:
        """Whether an intact entry exists. Cheap (reads the header only): a truncated file is deleted here."""
        if not isinstance(key, str):
            return False
        path = self.path(key)
        try:
            with safe_open(path, framework="pt") as file:
                metadata = file.metadata() or {}
        except FileNotFoundError:
            return False
        except SafetensorError as error:
            self._discard(path, f"unreadable ({error})")
            return False
        if metadata.get("format") != CACHE_FORMAT:
            self._discard(path, f"not a {CACHE_FORMAT} entry")
            return False
        return True

    def keys(self) -> list[str]:
        """The keys of all entries on disk (sorted), intact or not."""
        return sorted(path.name[: -len(_ENTRY_SUFFIX)] for path in self.root.glob(f"??/*{_ENTRY_SUFFIX}"))

    def get(self, key: str) -> CacheEntry | None:
        """The entry of `key`, or None if there is none or it is damaged (then it is logged and deleted).

        The file is read into memory, not memory-mapped: a tensor backed by a mapping would crash the process
        (SIGBUS) if the file were later truncated in place.
        """
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            tensors = load_safetensors(data)  # validates the header and that the data covers it exactly
        except SafetensorError as error:
            self._discard(path, f"unreadable ({error})")
            return None
        header_length = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_length]).get("__metadata__") or {}
        if metadata.get("format") != CACHE_FORMAT:
            self._discard(path, f"not a {CACHE_FORMAT} entry")
            return None
        if metadata.get("crc32") != _checksum(tensors):
            self._discard(path, "damaged (its CRC-32 does not match its tensors)")
            return None
        return CacheEntry(tensors, metadata)

    def put(
        self, key: str, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None
    ) -> Path:
        """Store `tensors` under `key` atomically; metadata values are stored as `str(value)`.

        The bytes go to a temporary file in the entry's folder (same file system, so the rename is atomic),
        are fsync'ed, and the file is renamed over the entry; the folder is fsync'ed so the rename survives a
        power cut. A concurrent writer of the same key simply wins or loses the rename: both wrote the same
        features.
        """
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        stored = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
        entry_metadata = {name: str(value) for name, value in (metadata or {}).items()}
        entry_metadata.update(format=CACHE_FORMAT, crc32=_checksum(stored))
        return files_poolingvq.atomic_write_bytes(path, safetensors_bytes(stored, metadata=entry_metadata))

    def verify(self, key: str) -> bool:
        """Whether an intact entry exists, its tensors read and checked against their CRC-32 (a damaged entry
        is logged and deleted). Costs a read of the entry; `key in cache` reads its header only."""
        return self.get(key) is not None

    def remove_orphaned_temp_files(self) -> int:
        """Delete the temporary files of writers that died mid-write; returns how many were deleted.

        A temporary file is `.<name>.<pid>.<random>.<host>.tmp` (see `files_poolingvq`). It is orphaned when its
        writer ran on this host and that process is gone, or when it is older than `ORPHANED_TEMP_FILE_SECONDS`
        (writers elsewhere). Files of live writers are left alone, so this is safe while other processes write.
        """
        removed = files_poolingvq.remove_orphaned_temp_files(self.root, "??/*")
        if removed:
            logger.info(
                "feature cache %s: removed %d temporary file(s) of interrupted writers", self.root, removed
            )
        return removed

    def _discard(self, path: Path, reason: str) -> None:
        logger.warning("feature cache: %s is %s; deleted, it will be recomputed", path, reason)
        path.unlink(missing_ok=True)


def _checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """CRC-32 (hex) of the tensors' names and bytes in name order: ~5 ms for a minute of MERT features."""
    crc = 0
    for name in sorted(tensors):
        crc = zlib.crc32(name.encode(), crc)
        crc = zlib.crc32(_tensor_bytes(tensors[name]), crc)
    return f"{crc:08x}"


# ------------------------------------------------------------------------------------------------ extraction


@dataclass
class ExtractionResult:
    """What [`extract_features`] did.

    Attributes:
        keys: the cache key of every clip, in clip order (None where a file could not be read).
        failures: the clips whose features are not in the cache, and why (all processes).
        computed: ids of the clips whose features were computed in this call (all processes), the others were
            already cached.
    """

    keys: list[str | None]
    failures: list[ClipFailure] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)

    @property
    def cached_keys(self) -> list[str]:
        """The keys of the clips whose features are in the cache, in clip order (for a dataset)."""
        failed = {failure.key for failure in self.failures}
        return [key for key in self.keys if key is not None and key not in failed]


@dataclass
class _Job:
    """A clip to encode: its id, key, key parts (stored as metadata) and the clip mapping itself."""

    clip_id: str
    key: str
    parts: dict[str, Any]
    clip: Mapping[str, Any]


def _plan_jobs(
    clips: Sequence[Mapping[str, Any]], fingerprint: str, settings: Mapping[str, Any]
) -> tuple[list[str | None], list[ClipFailure], list[_Job]]:
    """Every clip's key (None if its files cannot be read), those failures, and one job per distinct key."""
    keys: list[str | None] = []
    unreadable: list[ClipFailure] = []
    jobs: dict[str, _Job] = {}
    for clip in clips:
        clip_id = str(clip["id"])
        try:
            parts = clip_key_parts(clip, fingerprint, settings)
        except PoolingVQInputError as error:
            unreadable.append(ClipFailure(clip_id, None, str(error)))
            keys.append(None)
            continue
        key = key_of(parts)
        keys.append(key)
        jobs.setdefault(key, _Job(clip_id, key, parts, clip))  # the same bytes twice are computed once
    return keys, unreadable, list(jobs.values())


@dataclass
class _PreparedClip:
    """One clip read from disk, before the encoders: waveform float32 [S], tokens int64 [N, L, 4]."""

    clip_id: str
    key: str
    parts: dict[str, Any]
    waveform: np.ndarray | None = None
    tokens: np.ndarray | None = None
    error: str | None = None


class _ClipPreparation(Dataset):
    """Loads (or synthesizes) each clip's audio and tokenizes its MIDI; in DataLoader workers when asked.

    Input errors become `_PreparedClip.error` so that one bad clip never stops the others.
    """

    def __init__(
        self,
        jobs: list[_Job],
        feature_extractor: PoolingVQFeatureExtractor,
        tokenizer: CPMidiTokenizer,
        max_midi_rows: int,
        synthesis_kwargs: Mapping[str, Any],
    ) -> None:
        self.jobs = jobs
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.max_midi_rows = max_midi_rows
        self.synthesis_kwargs = dict(synthesis_kwargs)

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> _PreparedClip:
        job = self.jobs[index]
        clip = job.clip
        prepared = _PreparedClip(job.clip_id, job.key, job.parts)
        extractor = self.feature_extractor
        try:
            if clip.get("audio_path") is not None:
                prepared.waveform = load_audio(
                    clip["audio_path"],
                    target_sampling_rate=extractor.sampling_rate,
                    max_seconds=extractor.max_seconds,
                    reject_silence=extractor.reject_silence,
                )
            else:
                prepared.waveform = synthesize_midi(
                    clip["midi_path"],
                    sample_rate=extractor.sampling_rate,
                    max_seconds=extractor.max_seconds,
                    **self.synthesis_kwargs,
                )
            prepared.tokens = self.tokenizer(clip["midi_path"], max_rows=self.max_midi_rows)
        except PoolingVQInputError as error:
            prepared.waveform = prepared.tokens = None
            prepared.error = str(error)
        return prepared


def midi_token_sequences(
    midi_paths: Sequence[str | os.PathLike], tokenizer: CPMidiTokenizer, max_midi_rows: int
) -> list[torch.Tensor]:
    """Each MIDI file's kept rows joined into one token sequence, int64 [T_i, 4] (real tokens only), as
    `_encode_midi` joins them before the encoder: the inputs of a MIDI encoder trained with the head. A path given
    more than once (a clip's `--extra-soundfonts` renderings) is tokenized once and shares its tensor."""
    sequences: dict[str, torch.Tensor] = {}
    for path in map(str, midi_paths):
        if path not in sequences:
            rows = tokenizer(path, max_rows=max_midi_rows)  # as `_ClipPreparation` tokenizes for the cache
            sequences[path] = torch.from_numpy(join_rows(rows))
    return [sequences[str(path)] for path in midi_paths]


def _as_list(batch: list[_PreparedClip]) -> list[_PreparedClip]:
    return batch


def extract_features(
    model: PoolingVQForMusicEmotion,
    clips: Sequence[Mapping[str, Any]],
    cache: FeatureCache,
    *,
    accelerator: Any = None,
    batch_size: int = 4,
    feature_extractor: PoolingVQFeatureExtractor | None = None,
    tokenizer: CPMidiTokenizer | None = None,
    max_midi_rows: int = 1,
    synthesis_kwargs: Mapping[str, Any] | None = None,
    num_workers: int = 0,
    on_batch_stored: Callable[[list[str]], None] | None = None,
) -> ExtractionResult:
    """Run the frozen encoders once on every clip that has no cache entry yet, and store the features.

    Resumable: clips with an intact entry (read and checked against its CRC-32) are skipped, so a run that was killed goes on where it stopped (and
    the temporary files of killed writers are removed first). Memory stays bounded whatever the number of
    clips: clips stream through one batch at a time, while a background thread writes the previous batch (plus
    the DataLoader's prefetch with `num_workers`).

    Sharding: with an Accelerate `accelerator`, process `i` of `n` takes the distinct keys at positions
    `i, i + n, ...`, skipping those already cached. The split depends on the clip list only, never on the
    cache, which the other processes change while they run, so every clip belongs to exactly one process.
    All processes wait for each other at the end and get the same result.

    Args:
        model: a `PoolingVQForMusicEmotion` (moved to `accelerator.device` when an accelerator is given; its
            encoders run in eval mode under `torch.inference_mode`, its training flag is restored afterwards).
        clips: mappings (e.g. dicts) with `id`, `midi_path` and optional `audio_path` (None: audio synthesized
            from the MIDI with `synthesize_midi`). Other keys (labels...) are ignored.
        cache: where the features go.
        accelerator: an `accelerate.Accelerator`, or None for one process on the model's device.
        batch_size: clips per encoder pass (audio of unequal lengths is split further: see the module
            docstring).
        feature_extractor: default `PoolingVQFeatureExtractor` at the encoder's rate, cropped to
            `config.max_audio_seconds`.
        tokenizer: default `CPMidiTokenizer("midibert", config.max_midi_tokens)`.
        max_midi_rows: MIDI rows kept per clip, concatenated (see the module docstring).
        synthesis_kwargs: `soundfont` / `sustain_pedal` for the clips without audio.
        num_workers: DataLoader processes that read, synthesize and tokenize the next clips while the encoders
            run (0: in this process).
        on_batch_stored: called, once a batch's entries are written, with the ids of its clips (progress).

    Returns:
        [`ExtractionResult`]: the keys in clip order, the failures (bad clips are logged and skipped, never
        fatal) and the ids computed in this call.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if accelerator is not None:
        model = accelerator.unwrap_model(model).to(accelerator.device)
    process_index = accelerator.process_index if accelerator is not None else 0
    num_processes = accelerator.num_processes if accelerator is not None else 1
    if accelerator is None or accelerator.is_main_process:
        cache.remove_orphaned_temp_files()

    config: PoolingVQConfig = model.config
    feature_extractor = feature_extractor or default_feature_extractor(config)
    tokenizer = tokenizer or CPMidiTokenizer("midibert", config.max_midi_tokens)
    needs_synthesis = any(clip.get("audio_path") is None for clip in clips)
    settings = preprocessing_settings(
        feature_extractor, tokenizer, max_midi_rows, (synthesis_kwargs or {}) if needs_synthesis else None
    )
    keys, unreadable, jobs = _plan_jobs(clips, encoder_fingerprint(model), settings)
    # Each entry found is read and checked against its CRC-32, not just its header: a damaged one is deleted
    # and recomputed here, rather than found by training, which cannot recompute it and would stop.
    my_jobs = [job for job in jobs[process_index::num_processes] if not cache.verify(job.key)]

    preparation = _ClipPreparation(
        my_jobs, feature_extractor, tokenizer, max_midi_rows, synthesis_kwargs or {}
    )
    loader = DataLoader(preparation, batch_size=batch_size, num_workers=num_workers, collate_fn=_as_list)
    computed, failures = _encode_and_store(
        model, loader, feature_extractor, tokenizer.max_length, cache, on_batch_stored
    )

    if num_processes > 1:
        from accelerate.utils import gather_object

        accelerator.wait_for_everyone()
        failures = [ClipFailure(*failure) for failure in gather_object(failures)]
        computed = list(gather_object(computed))
    if accelerator is None or accelerator.is_main_process:  # every process holds the same, gathered lists
        for failure in unreadable + failures:
            logger.warning("features of clip %r not extracted: %s", failure.clip_id, failure.message)
        logger.info(
            "features: %d clips, %d computed, %d failed, cache %s",
            len(keys),
            len(computed),
            len(unreadable) + len(failures),
            cache.root,
        )
    return ExtractionResult(keys=keys, failures=unreadable + failures, computed=computed)


def default_feature_extractor(config: PoolingVQConfig) -> PoolingVQFeatureExtractor:
    """MERT's feature extractor at the encoder's rate, cropped to `config.max_audio_seconds`."""
    return PoolingVQFeatureExtractor(
        sampling_rate=config.audio_sampling_rate, max_seconds=config.max_audio_seconds
    )


def _encode_and_store(
    model: PoolingVQForMusicEmotion,
    loader: DataLoader,
    feature_extractor: PoolingVQFeatureExtractor,
    row_length: int,
    cache: FeatureCache,
    on_batch_stored: Callable[[list[str]], None] | None,
) -> tuple[list[str], list[ClipFailure]]:
    """Encode the prepared batches and store them; returns the ids stored and the clips that failed."""
    computed: list[str] = []
    failures: list[ClipFailure] = []
    was_training = model.training
    model.eval()
    # Writes (checksum, serialisation, fsync) run in one background thread while the encoders run the next
    # batch; at most one batch waits to be written, so memory stays at two batches of features.
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poolingvq-cache-writer")
    pending: Future | None = None

    def finish_pending_writes() -> None:
        stored, write_failures = pending.result()
        computed.extend(stored)
        failures.extend(write_failures)
        if on_batch_stored is not None and stored:
            on_batch_stored(stored)

    try:
        with torch.inference_mode():
            for batch in loader:
                for prepared in batch:
                    if prepared.error is not None:
                        failures.append(ClipFailure(prepared.clip_id, prepared.key, prepared.error))
                ready = [prepared for prepared in batch if prepared.error is None]
                encoded = _encode_batch(model, ready, feature_extractor, row_length)
                if pending is not None:
                    finish_pending_writes()
                pending = writer.submit(_store_batch, cache, ready, encoded)
        if pending is not None:
            finish_pending_writes()
    finally:
        writer.shutdown(wait=True)
        model.train(was_training)
    return computed, failures


def _encode_batch(
    model: PoolingVQForMusicEmotion,
    batch: list[_PreparedClip],
    feature_extractor: PoolingVQFeatureExtractor,
    row_length: int,
) -> list[dict[str, torch.Tensor]]:
    """Each clip's unpadded features, fp16 on the CPU: `{"audio": [T_i, D], "midi": [L_i, D]}`."""
    if not batch:
        return []
    audio = _encode_audio(model, [prepared.waveform for prepared in batch], feature_extractor)
    midi = _encode_midi(model, [prepared.tokens for prepared in batch], row_length)
    return [
        {"audio": clip_audio, "midi": clip_midi} for clip_audio, clip_midi in zip(audio, midi, strict=True)
    ]


def _store_batch(
    cache: FeatureCache, batch: list[_PreparedClip], encoded: list[dict[str, torch.Tensor]]
) -> tuple[list[str], list[ClipFailure]]:
    """Write each clip's entry (in the writer thread); returns the ids stored and the clips refused."""
    stored, failures = [], []
    for prepared, tensors in zip(batch, encoded, strict=True):
        # numpy, not torch: a single-threaded check that does not compete with the encoders' thread pool
        if not all(np.isfinite(tensor.numpy()).all() for tensor in tensors.values()):
            failures.append(
                ClipFailure(
                    prepared.clip_id, prepared.key, "its features overflow fp16 (|x| > 65504) or are NaN"
                )
            )
            continue
        metadata = {
            "id": prepared.clip_id,
            "audio_source": "file" if "audio_sha256" in prepared.parts else "synthesized",
            "midi_rows": len(prepared.tokens),
            "key_parts": canonical_json(prepared.parts),
        }
        cache.put(prepared.key, tensors, metadata)
        stored.append(prepared.clip_id)
    return stored, failures


def _encode_audio(
    model: PoolingVQForMusicEmotion, waveforms: list[np.ndarray], feature_extractor: PoolingVQFeatureExtractor
) -> list[torch.Tensor]:
    """Waveforms [S_i] -> fp16 features [T_i, D] on the CPU, each as if it had been encoded alone.

    The batch is padded as the pipeline's collation pads it, and encoded by the model's own `encode_audio`, which
    groups clips by length where padding would change the features: the cache stores what the pipeline computes.
    """
    inputs = feature_extractor(waveforms, sampling_rate=feature_extractor.sampling_rate, return_tensors="pt")
    frames, frame_mask = model.encode_audio(inputs["input_values"], inputs["attention_mask"])
    frames, frame_mask = frames.to(torch.float16).cpu(), frame_mask.cpu()  # one conversion per pass
    return [frames[row][frame_mask[row]] for row in range(len(waveforms))]


def _encode_midi(
    model: PoolingVQForMusicEmotion, token_rows: list[np.ndarray], row_length: int
) -> list[torch.Tensor]:
    """Token rows [N_i, L, 4] -> fp16 features [l_i, D] on the CPU: each clip's real tokens, row after row.

    The rows are joined as the processor joins them (`join_rows`) and read back row by row by the model's own
    `encode_midi`, the pipeline's way.
    """
    pieces = [torch.from_numpy(join_rows(rows)) for rows in token_rows]
    tokens = pad_sequence(pieces, batch_first=True)  # [B, T, 4]; encode_midi masks the padding
    lengths = torch.tensor([len(piece) for piece in pieces])
    mask = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
    features, mask = model.encode_midi(tokens, mask, row_length=row_length)
    features, mask = features.to(torch.float16).cpu(), mask.cpu()
    return [features[row][mask[row]] for row in range(len(pieces))]


# --------------------------------------------------------------------------------------------- training data


class CachedFeatureDataset(Dataset):
    """Cached features as a torch Dataset: item `i` is `{"audio_features": [T, D], "midi_features": [L, D],
    "labels": int}` (fp16 features; no `labels` when `labels` is None). With `midi_tokens` the MIDI side is the
    clip's CP tokens instead, `"midi_input_ids": [T, 4]` (int64, real tokens), for a MIDI encoder trained with the
    head; the audio side stays cached. With `midi_statistics` each item also has `"midi_statistics": [S]`, the
    clip's performance statistics (for a model with `PoolingVQConfig.midi_statistics`).

    Reads one entry per item, so memory does not grow with the dataset. Batch with
    [`collate_cached_features`].

    Args:
        cache: the feature cache.
        keys: the clips' keys (e.g. `ExtractionResult.cached_keys`).
        labels: one class index per key, or None.
        midi_tokens: one token sequence [T_i, 4] per key (`midi_token_sequences`), or None (cached MIDI features).
        midi_statistics: `[len(keys), S]` float, one row of performance statistics per key, or None.
    """

    def __init__(
        self,
        cache: FeatureCache,
        keys: Sequence[str],
        labels: Sequence[int] | None = None,
        midi_tokens: Sequence[torch.Tensor] | None = None,
        midi_statistics: torch.Tensor | None = None,
    ) -> None:
        if labels is not None and len(labels) != len(keys):
            raise ValueError(f"{len(keys)} keys but {len(labels)} labels")
        if midi_tokens is not None and len(midi_tokens) != len(keys):
            raise ValueError(f"{len(keys)} keys but {len(midi_tokens)} MIDI token sequences")
        if midi_statistics is not None and len(midi_statistics) != len(keys):
            raise ValueError(f"{len(keys)} keys but {len(midi_statistics)} rows of MIDI statistics")
        self.midi_statistics = midi_statistics
        self.cache = cache
        self.keys = list(keys)
        self.labels = None if labels is None else [int(label) for label in labels]
        self.midi_tokens = None if midi_tokens is None else list(midi_tokens)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.cache.get(self.keys[index])
        if entry is None:
            raise KeyError(
                f"no intact cached features for key {self.keys[index]} in {self.cache.root}: run "
                "extract_features on these clips again (it recomputes only what is missing)"
            )
        item: dict[str, Any] = {"audio_features": entry.audio}
        if self.midi_tokens is None:
            item["midi_features"] = entry.midi
        else:
            item["midi_input_ids"] = self.midi_tokens[index]
        if self.midi_statistics is not None:
            item["midi_statistics"] = self.midi_statistics[index]
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item


def collate_cached_features(batch: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad items of [`CachedFeatureDataset`] into the feature kwargs of `PoolingVQForMusicEmotion.forward`.

    Returns:
        `audio_features` [B, T, D] and `midi_features` [B, L, D] (zero-padded, dtype kept), their bool masks
        `audio_features_mask` [B, T] / `midi_features_mask` [B, L], and `labels` [B] int64 when the items have
        them: `model(**batch)` runs as it is. Items with `midi_input_ids` (CP tokens) give `midi_input_ids`
        [B, L, 4], padded with the tokenizer's `PAD_TOKEN`, and `midi_attention_mask` [B, L] (bool) instead of
        `midi_features`; items with `midi_statistics` give them stacked, [B, S].
    """
    collated: dict[str, torch.Tensor] = {}
    for name in ("audio_features", "midi_features"):
        if name not in batch[0]:
            continue
        sequences = [item[name] for item in batch]
        lengths = torch.tensor([len(sequence) for sequence in sequences])
        collated[name] = pad_sequence(sequences, batch_first=True)
        collated[f"{name}_mask"] = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]
    if "midi_input_ids" in batch[0]:
        tokens = [item["midi_input_ids"] for item in batch]
        lengths = torch.tensor([len(sequence) for sequence in tokens])
        mask = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]
        padded = pad_sequence(tokens, batch_first=True)
        collated["midi_input_ids"] = torch.where(mask[..., None], padded, padded.new_tensor(PAD_TOKEN))
        collated["midi_attention_mask"] = mask
    if "midi_statistics" in batch[0]:
        collated["midi_statistics"] = torch.stack([item["midi_statistics"] for item in batch])
    if "labels" in batch[0]:
        collated["labels"] = torch.tensor([item["labels"] for item in batch], dtype=torch.long)
    return collated


def codebook_start_keys(train_keys: Sequence[str], fraction: float = 0.5, seed: int = 0) -> list[str]:
    """A seeded random `fraction` of the training keys (at least one), in their original order.

    The paper starts the codebook by k-means on the cached frames of a random half of the training set.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if not train_keys:
        raise ValueError("no training keys to sample from")
    count = max(1, round(fraction * len(train_keys)))
    chosen = sorted(random.Random(seed).sample(range(len(train_keys)), count))
    return [train_keys[index] for index in chosen]


def iter_audio_frames(cache: FeatureCache, keys: Iterable[str]) -> Iterator[torch.Tensor]:
    """Yield each clip's cached audio frames, float32 [T, D], one clip at a time (missing entries skipped)."""
    for key in keys:
        entry = cache.get(key)
        if entry is None:
            logger.warning("no cached features for key %s: left out of the codebook start", key)
            continue
        yield entry.audio.float()


def fit_audio_standardization_from_cache(
    model: PoolingVQForMusicEmotion,
    cache: FeatureCache,
    train_keys: Sequence[str],
    fraction: float,
    seed: int,
) -> bool:
    """Fit the fusion's audio `FeatureStandardization` (`audio_normalization="standardize"`) on the cached frames
    of the clips the codebook starts from (`codebook_start_keys`); False when the model has none to fit."""
    projection = getattr(model.fusion, "audio_projection", None)
    if projection is None or not isinstance(projection[0], FeatureStandardization):
        return False
    projection[0].fit(iter_audio_frames(cache, codebook_start_keys(train_keys, fraction, seed)))
    return True


def init_codebook_from_cache(
    model: PoolingVQForMusicEmotion,
    cache: FeatureCache,
    train_keys: Sequence[str],
    *,
    fraction: float = 0.5,
    max_frames: int = 200_000,
    num_iters: int = 20,
    seed: int = 0,
) -> list[str]:
    """Start the codebook by cosine k-means on the cached frames of a seeded random half of the training set.

    The frames stream clip by clip into `PoolingVQQuantizer.init_codebook`, which keeps a uniform sample of at
    most `max_frames`: memory is `max_frames + one clip` frames whatever the training set's size.

    Returns:
        the keys whose frames were sampled.
    """
    quantizer: PoolingVQQuantizer | None = model.quantizer
    if quantizer is None:
        raise ValueError("this model has no quantizer (modalities='midi'): there is no codebook to start")
    keys = codebook_start_keys(train_keys, fraction, seed)
    quantizer.init_codebook(
        iter_audio_frames(cache, keys), num_iters=num_iters, max_frames=max_frames, seed=seed
    )
    return keys


__all__ = [
    "CACHE_FORMAT",
    "CacheEntry",
    "CachedFeatureDataset",
    "ClipFailure",
    "ExtractionResult",
    "FeatureCache",
    "clip_key",
    "clip_key_parts",
    "codebook_start_keys",
    "collate_cached_features",
    "default_feature_extractor",
    "encoder_fingerprint",
    "extract_features",
    "file_sha256",
    "fit_audio_standardization_from_cache",
    "init_codebook_from_cache",
    "iter_audio_frames",
    "midi_token_sequences",
    "preprocessing_settings",
]
