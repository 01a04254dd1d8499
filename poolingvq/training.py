"""Training PoolingVQ with Accelerate: the paper's recipe, on the frozen encoders' cached features.

    poolingvq train --dataset emopia --data-dir ../shared/data/emopia --model-init paper --output-dir runs/emopia
    accelerate launch -m poolingvq.train --dataset emopia ...           # one GPU, several, or several machines

Devices, process count and mixed precision are Accelerate's: `accelerate launch` flags, `accelerate config`, or the
`ACCELERATE_*` environment; `--mixed-precision` overrides them only when given. Logs and progress bars (clips/s and
ETA during feature extraction, every epoch and every evaluation) come from the main process only.

One run (`train`; each step is a function of its own, and `train(args, clips)` takes any clips):
1. the data set's official split (`poolingvq.data`, `load_split_clips`), audio from the user's folder or
   synthesized from the MIDI;
2. the frozen encoders run once per clip into the feature cache (`features.py`), sharded over processes
   (`prepare_features`); with `--finetune-midi-encoder` (ours, not the paper's) the MIDI encoder trains with the
   head, so the batches carry each clip's CP tokens (tokenized once per run) instead of its cached MIDI features;
3. the codebook starts from cosine k-means on the cached frames of a seeded random half of the training set
   (`init_from_cache`);
4. Adam(0.9, 0.99, eps 1e-6) with two parameter groups (fusion + head: lr 1e-4, weight decay 5e-5; quantizer:
   lr 5e-5, weight decay 1e-5; and a fine-tuned MIDI encoder's, ours: lr 2e-5, weight decay 0.01),
   ReduceLROnPlateau(factor 0.7, patience 2, threshold 1e-4) on the validation loss, early stopping after 5 epochs
   without a better validation macro-F1 (`fit`, on `run_loop.run_epochs`);
5. the best epoch (validation macro-F1) is evaluated once on test (`evaluate_best`) and saved as a model folder
   that `pipeline("music-emotion", model=folder, trust_remote_code=True)` loads, with `metrics.json` and a model
   card (`save_outputs`).

Every number is a flag whose default is the paper's value (or ours, said so, where the paper is silent).
Checkpoints (`accelerator.save_state`, written whole or not at all: `checkpoints.py`, by the run skeleton
`pretrain-midi` shares: `run_loop.py`) are written after every epoch; `--resume` continues from the last one and, with the same seed, ends with the same metrics as an
uninterrupted run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from . import provenance, publish
from .arguments import add_dataclass_arguments, dataclass_from_namespace
from .checkpoints import save_tensors_atomically
from .configuration_poolingvq import QUADRANT_LABELS, MidiBertConfig, PoolingVQConfig
from .errors_poolingvq import PoolingVQInputError
from .hub import is_local, resolve_model_dir, source_record
from .metrics.music_emotion.music_emotion import music_emotion_scores
from .modeling_poolingvq import PoolingVQForMusicEmotion
from .prepared_dataset import FILES_FOLDER, check_dataset_arguments, load_prepared_clips
from .processing_poolingvq import PoolingVQProcessor
from .quantization_poolingvq import POOLING_RULES
from .run_loop import EpochResult, RunState, make_accelerator, register_and_resume, run_epochs
from .transcription_poolingvq import INSTALL_HINT, transcription_available
from .weights import load_midibert

logger = logging.getLogger("poolingvq.training")

PRESETS = ("paper", "offline", "tiny")
#: The top-level modules every run trains, (re)initialised from the run's seed (`build_model`).
TRAINED_PARTS = ("quantizer", "fusion", "classifier")
#: Seeds the random weights of a preset's frozen encoders, whatever the run's seed (see `build_model`).
ENCODER_SEED = 0


@dataclass
class TrainingArguments:
    """Everything a run depends on. Defaults are the paper's values unless the help says otherwise."""

    dataset: str = field(
        default="emopia", metadata={"help": "emopia or vgmidi", "choices": ("emopia", "vgmidi")}
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "the unzipped release (default: download it)"}
    )
    config: str = field(
        default="paper", metadata={"help": "the split: paper (default), release, release_0.2"}
    )
    audio_dir: str | None = field(
        default=None, metadata={"help": "your audio, <id>.wav|flac|mp3 (else synthesized)"}
    )
    dataset_path: str | None = field(
        default=None,
        metadata={
            "help": "train on a prepared dataset instead of the raw release: prepare-dataset's --out folder or a "
            "Hub dataset repo id of one; its splits, labels and recordings (--dataset and --config name it)"
        },
    )
    dataset_revision: str | None = field(
        default=None, metadata={"help": "Hub branch, tag or commit of --dataset-path (default: main)"}
    )
    model_init: str = field(
        default="paper",
        metadata={
            "help": "the frozen encoders: a preset (paper, offline, tiny), a model folder (e.g. from "
            "import-weights) or a Hub repo id of one"
        },
    )
    model_init_revision: str | None = field(
        default=None, metadata={"help": "Hub branch, tag or commit of --model-init (default: main)"}
    )
    output_dir: str = field(
        default="runs/poolingvq", metadata={"help": "where the model, metrics and card go"}
    )
    midi_encoder: str | None = field(
        default=None,
        metadata={
            "help": "the MIDI encoder to use instead of --model-init's: a MidiBertModel folder (e.g. from "
            "pretrain-midi), an official MIDI-BERT checkpoint, or a Hub repo id of either"
        },
    )
    midi_encoder_revision: str | None = field(
        default=None, metadata={"help": "Hub branch, tag or commit of --midi-encoder (default: main)"}
    )
    allow_random_encoders: bool = field(
        default=False,
        metadata={
            "help": "train even though an encoder holds random weights (a preset without import-weights): "
            "for tests and benchmarks, not for results"
        },
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "feature cache (default: ~/.cache/poolingvq)"}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "use only this many training clips"}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "use only this many val/test clips"})
    epochs: int = field(
        default=50, metadata={"help": "maximum epochs (ours: early stopping usually ends sooner)"}
    )
    batch_size: int = field(default=16, metadata={"help": "clips per step (ours: the paper does not say)"})
    seed: int = field(default=42, metadata={"help": "seeds data order, initialisation, codebook start"})
    data_seed: int = field(
        default=0, metadata={"help": "seeds the --max-*-samples subsets (same clips for every seed)"}
    )
    mixed_precision: str | None = field(
        default=None,
        metadata={
            "help": "no, fp16 or bf16 (default: Accelerate's, from accelerate launch / config, else no)",
            "choices": ("no", "fp16", "bf16"),
        },
    )
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "steps per optimizer update"})
    lr_head: float = field(default=1e-4, metadata={"help": "learning rate of the fusion and the head"})
    weight_decay_head: float = field(
        default=5e-5, metadata={"help": "weight decay of the fusion and the head"}
    )
    lr_quantizer: float = field(default=5e-5, metadata={"help": "learning rate of the codebook"})
    weight_decay_quantizer: float = field(default=1e-5, metadata={"help": "weight decay of the codebook"})
    audio_tilt_augmentation: float | None = field(
        default=None,
        metadata={
            "help": "log-mel front end only: tilt each training clip's mel spectrum by a random slope, up to this "
            "many log-mel units (1 = 40 dB) between its lowest and highest bin, so the model cannot read loudness "
            "from one piano's brightness (default: off)"
        },
    )
    statistics_dropout: float | None = field(
        default=None,
        metadata={
            "help": "hide, in each training example with this probability, the performance statistics a "
            "transcription cannot know (velocities, sustain pedal, durations), read then as unknown, so that the "
            "model learns to answer from the rest as it must for a recording alone (default: off)"
        },
    )
    transpose_midi: int | None = field(
        default=None,
        metadata={
            "help": "with --finetune-midi-encoder: transpose each training clip's notes (its CP pitch tokens and "
            "pitch-level statistics) by a random whole number of semitones in [-K, K], kept in MIDI-BERT's pitch "
            "range, so that the encoder learns that a key is no mood; the cached audio keeps its key "
            "(default: off)"
        },
    )
    weight_average_decay: float | None = field(
        default=None,
        metadata={
            "help": "evaluate, keep and ship an exponential moving average of the trained weights, updated after "
            "every step with this decay (e.g. 0.995: about the last 200 steps), instead of the last step's weights "
            "(default: off; the paper does not say)"
        },
    )
    transcribed_training_audio: bool | None = field(
        default=None,
        metadata={
            "help": "also train on each training rendering read as a recording alone is: the audio with its notes "
            "transcribed by basic-pitch (its statistics read as the model's `transcribed_statistics` says), one "
            "more training example per rendering, so that the fusion learns how a transcription errs (default: off)"
        },
    )
    finetune_midi_encoder: bool = field(
        default=False,
        metadata={
            "help": "train the MIDI encoder with the head, on the clips' CP tokens (ours: the paper freezes both "
            "encoders; the audio encoder stays frozen and cached)"
        },
    )
    lr_midi_encoder: float = field(
        default=2e-5, metadata={"help": "learning rate of the MIDI encoder (ours; --finetune-midi-encoder)"}
    )
    weight_decay_midi_encoder: float = field(
        default=0.01, metadata={"help": "weight decay of the MIDI encoder (ours; --finetune-midi-encoder)"}
    )
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    adam_epsilon: float = 1e-6
    plateau_factor: float = 0.7
    plateau_patience: int = 2
    plateau_threshold: float = 1e-4
    early_stopping_patience: int = field(default=5, metadata={"help": "epochs without a better val macro-F1"})
    codebook_fraction: float = field(default=0.5, metadata={"help": "share of training clips for k-means"})
    kmeans_max_frames: int = field(
        default=200_000, metadata={"help": "frames sampled for k-means (memory bound)"}
    )
    kmeans_iters: int = 20
    extraction_batch_size: int = 4
    extraction_workers: int = field(
        default=0, metadata={"help": "DataLoader workers that decode/synthesize for the encoders"}
    )
    soundfont: str | None = field(
        default=None, metadata={"help": "a .sf2 for synthesized audio (default: General MIDI)"}
    )
    extra_soundfonts: str | None = field(
        default=None,
        metadata={
            "help": "comma-separated .sf2 files: each training clip without audio is also rendered with each of "
            "them, one more training example per soundfont (validation and test: --soundfont only), so the "
            "audio path does not learn one instrument's timbre"
        },
    )
    num_workers: int = 0
    pooling: str | None = field(default=None, metadata={"help": "ablation: poolingvq, avg, max, none"})
    modalities: str | None = field(default=None, metadata={"help": "ablation: audio+midi, audio, midi"})
    codebook_size: int | None = field(default=None, metadata={"help": "P (default: the preset's)"})
    fusion_readout: str | None = field(
        default=None,
        metadata={"help": "what the head reads: midi (stage 2) or both stages (default: the preset's)"},
    )
    modality_dropout: float | None = field(
        default=None,
        metadata={"help": "probability of hiding one modality of a training piece (default: the preset's)"},
    )
    max_audio_seconds: float | None = field(
        default=None, metadata={"help": "audio crop (default: the preset's 60 s)"}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "any PoolingVQConfig field, key=value pairs separated by commas (e.g. window_size=7,"
            "codebook_size=32,audio_feature_layers=[4,6]), checked against the config's fields and types, on top "
            "of --model-init's config; a field given here and by its own flag must agree"
        },
    )
    midi_mode: str = field(
        default="midibert", metadata={"help": "CP grid: midibert (for MIDI-BERT's weights) or rescaled"}
    )
    resume: bool = field(default=False, metadata={"help": "continue from the last checkpoint in output_dir"})
    save_model: bool = field(default=True, metadata={"help": "write the final model folder"})
    logging_dir: str | None = field(
        default=None, metadata={"help": "tensorboard logs (default: output_dir/logs)"}
    )
    progress: bool = field(
        default=True, metadata={"help": "show progress bars (main process, on a terminal only)"}
    )
    push_to_hub: str | None = field(
        default=None,
        metadata={
            "help": "when training ends, upload the model folder (no checkpoints, no logs) to this Hub model "
            "repo, org/name, created when missing (later: poolingvq push-to-hub DIR REPO_ID)"
        },
    )
    hub_private_repo: bool = field(default=False, metadata={"help": "create the --push-to-hub repo private"})

    def model_config_overrides(self) -> dict[str, Any]:
        """The model-config fields this run sets: the explicit flags (`--pooling`, `--codebook-size`...) and
        `--config-overrides`, which must agree where they both set a field. Whether the MIDI encoder is fine-tuned
        is always this run's choice (`--finetune-midi-encoder`, or `finetune_midi_encoder=true` among the
        overrides), never inherited from `--model-init`'s config."""
        flags = {name: getattr(self, name) for name in CONFIG_FLAGS if getattr(self, name) is not None}
        if self.finetune_midi_encoder:
            flags["finetune_midi_encoder"] = True
        overrides = parse_config_overrides(self.config_overrides)
        for name in flags.keys() & overrides.keys():
            if flags[name] != overrides[name]:
                flag = "--" + name.replace("_", "-")
                raise PoolingVQInputError(
                    "--config-overrides",
                    f"sets {name}={overrides[name]!r}, but {flag} says {flags[name]!r}: give it once",
                )
        return {"finetune_midi_encoder": False, **flags, **overrides}


#: TrainingArguments fields that set the PoolingVQConfig field of the same name (flags kept from before
#: `--config-overrides`, which sets any field).
CONFIG_FLAGS = (
    "pooling",
    "modalities",
    "codebook_size",
    "fusion_readout",
    "modality_dropout",
    "max_audio_seconds",
)
#: PoolingVQConfig fields `--config-overrides` does not set: the encoders' sub-configs (they come with
#: --model-init / --midi-encoder, with their weights) and the label texts.
NOT_OVERRIDABLE = frozenset({"audio_config", "midi_config", "label_meanings"})


def config_field_types() -> dict[str, str]:
    """PoolingVQConfig's own fields and their annotations as written (`"int"`, `"float"`, `"list[int] | None"`)."""
    return {
        name: str(kind)
        for name, kind in vars(PoolingVQConfig).get("__annotations__", {}).items()
        if not str(kind).startswith("ClassVar")
    }


def split_top_level(text: str) -> list[str]:
    """`text` split at the commas outside brackets, braces and quotes (`a=1,b=[1,2]` -> `a=1`, `b=[1,2]`)."""
    parts, depth, quote, start = [], 0, None, 0
    for index, character in enumerate(text):
        if quote:
            quote = None if character == quote else quote
        elif character in "\"'":
            quote = character
        elif character in "[{(":
            depth += 1
        elif character in "]})":
            depth -= 1
        elif character == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def parse_config_overrides(text: str | None) -> dict[str, Any]:
    """`--config-overrides key=value,...` -> `{field: value}`, each key a PoolingVQConfig field and each value of
    its type (`run_clm`'s `--config_overrides`, type-checked): an int field takes `7`, a float `0.3` or `1e-4`, a
    bool `true` / `false`, a string the text itself, an optional list `[4,6]` or `none`. Anything else is refused
    in one line naming the field, before a model is built."""
    if not text:
        return {}
    types = config_field_types()
    overrides: dict[str, Any] = {}
    for item in split_top_level(text):
        name, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not name:
            raise PoolingVQInputError("--config-overrides", f"{item!r} is not key=value")
        if name not in types or name in NOT_OVERRIDABLE:
            settable = sorted(set(types) - NOT_OVERRIDABLE)
            raise PoolingVQInputError(
                "--config-overrides",
                f"{name!r} is not a PoolingVQConfig field it can set; those are {settable}",
            )
        if name in overrides:
            raise PoolingVQInputError("--config-overrides", f"{name} is given twice")
        overrides[name] = _config_value(name, types[name], value)
    return overrides


def _config_value(name: str, kind: str, text: str) -> Any:
    """`text` as a value of the annotation `kind`; PoolingVQInputError naming the field when it is not one."""
    optional = kind.endswith("| None")
    base = kind.removesuffix("| None").strip()
    if optional and text.lower() in ("none", "null"):
        return None
    try:
        if base == "int":
            return int(text)
        if base == "float":
            return float(text)
        if base == "bool":
            return {"true": True, "false": False, "1": True, "0": False}[text.lower()]
        if base == "str":
            return text.strip("\"'")
        if base == "list[int]":
            value = json.loads(text)
            if isinstance(value, list) and all(type(item) is int for item in value):
                return value
    except (ValueError, KeyError):
        pass
    raise PoolingVQInputError("--config-overrides", f"{name}={text!r}: {name} must be {kind}")


#: Fields that count something and must be at least 1 (None, where allowed, means "all" / "the preset's").
POSITIVE_COUNTS = (
    "epochs",
    "batch_size",
    "gradient_accumulation_steps",
    "extraction_batch_size",
    "max_train_samples",
    "max_eval_samples",
    "codebook_size",
    "kmeans_iters",
    "kmeans_max_frames",
)
#: Fields that count something and may be 0.
NON_NEGATIVE_COUNTS = ("num_workers", "extraction_workers", "early_stopping_patience", "plateau_patience")


def check_arguments(args: TrainingArguments) -> None:
    """Refuse counts that make no run, in one line naming the flag: `--batch-size 0` or `--max-train-samples 0`
    would otherwise end in a traceback from deep inside the data loader or the codebook start."""
    for name, least in [(name, 1) for name in POSITIVE_COUNTS] + [(name, 0) for name in NON_NEGATIVE_COUNTS]:
        value = getattr(args, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            flag = "--" + name.replace("_", "-")
            wanted = "a whole number of at least 1" if least else "a whole number, 0 or more"
            raise PoolingVQInputError(flag, f"must be {wanted}, got {value!r}")
    check_dataset_arguments(args.dataset_path, args.data_dir, args.audio_dir)


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per `TrainingArguments` field, typed and documented from the dataclass."""
    add_dataclass_arguments(parser, TrainingArguments)


# ---------------------------------------------------------------------------------------------------------- data


def feature_cache_dir(args: TrainingArguments) -> Path:
    """The feature cache's folder: `--cache-dir`, else `~/.cache/poolingvq/features`."""
    return Path(args.cache_dir) if args.cache_dir else Path.home() / ".cache" / "poolingvq" / "features"


def load_split_clips(args: TrainingArguments) -> dict[str, list[dict[str, Any]]]:
    """The data set's official split as clips `{"id", "midi_path", "audio_path", "label"}` per split name: from
    the raw release, or from the prepared dataset `--dataset-path` names (its splits, labels and recordings; its
    MIDI and audio bytes become files in the feature cache's `dataset_files/`, see `prepared_dataset.py`)."""
    if args.dataset_path is not None:
        return load_prepared_clips(
            args.dataset_path,
            revision=args.dataset_revision,
            dataset=args.dataset,
            config=args.config,
            files_dir=feature_cache_dir(args) / FILES_FOLDER,
        )
    from .data.prepare import split_clips

    return split_clips(args.dataset, args.config, data_dir=args.data_dir, audio_dir=args.audio_dir)


def subset(items: Sequence[Any], count: int | None, seed: int) -> list[Any]:
    """A seeded random `count` of `items`, in their order (the split files are sorted by quadrant, so the first
    `count` would be one class)."""
    if count is None or count >= len(items):
        return list(items)
    chosen = sorted(random.Random(seed).sample(range(len(items)), count))
    return [items[index] for index in chosen]


# ---------------------------------------------------------------------------------------------------------- model


def model_init_dir(args: TrainingArguments) -> Path | None:
    """The folder `--model-init` names (a Hub repo is downloaded into huggingface_hub's cache), None for a preset."""
    if args.model_init in PRESETS:
        return None
    folder = resolve_model_dir(args.model_init, args.model_init_revision, flag="--model-init")
    if not (folder / "config.json").is_file():
        raise PoolingVQInputError(
            f"--model-init {args.model_init}",
            f"neither a preset ({', '.join(PRESETS)}) nor a model folder (no config.json in {folder})",
        )
    return folder


def init_config(args: TrainingArguments, midi_config: MidiBertConfig | None = None) -> PoolingVQConfig:
    """The run's model configuration, without building any weights: `--model-init`'s, the ablation flags on top
    (and `midi_config` when `--midi-encoder` replaces the MIDI encoder), with the record of where each encoder's
    weights come from (`provenance.py`): a preset's are random, a folder's are what its config.json says, and
    `--midi-encoder`'s are that folder or checkpoint."""
    overrides = args.model_config_overrides()
    if midi_config is not None:
        overrides["midi_config"] = midi_config.to_dict()
    folder = model_init_dir(args)
    try:
        if folder is None:
            config = PoolingVQConfig.from_preset(args.model_init, **overrides)
        else:
            config = PoolingVQConfig.from_pretrained(folder, **overrides)
    except ValueError as error:  # a value the config refuses (window_stride > window_size...): one line
        flag = "--config-overrides" if args.config_overrides else f"--model-init {args.model_init}"
        raise PoolingVQInputError(flag, str(error)) from error
    if folder is None:
        provenance.set_encoder_weights(
            config,
            **{
                name: provenance.random_weights(ENCODER_SEED)
                for name, record in provenance.encoder_weights(config).items()
                if record["kind"] != "none"  # the log-mel front end has no weights to draw
            },
        )
    if args.midi_encoder is not None:
        path = resolve_model_dir(args.midi_encoder, args.midi_encoder_revision, flag="--midi-encoder")
        provenance.set_encoder_weights(
            config,
            midi=provenance.pretrained(
                "MIDI-BERT", "train --midi-encoder", **source_record(args.midi_encoder, path)
            ),
        )
    return config


def check_encoders_loaded(args: TrainingArguments, config: PoolingVQConfig) -> None:
    """Refuse, in one line that says what to do, to train on encoders whose weights were never loaded, unless
    `--allow-random-encoders`: the paper's numbers rest on MERT's and MIDI-BERT's pre-trained weights, and a
    run on random ones would otherwise look like any other."""
    not_loaded = provenance.encoders_not_loaded(config)
    if not not_loaded or args.allow_random_encoders:
        return
    records = provenance.encoder_weights(config)
    names = {"audio": "the audio encoder (MERT)", "midi": "the MIDI encoder (MIDI-BERT)"}
    states = {
        "random": "holds random weights",
        "unknown": "has no record of where its weights came from (saved before import-weights recorded it)",
    }
    what = " and ".join(f"{names[name]} {states[records[name]['kind']]}" for name in not_loaded)
    raise PoolingVQInputError(
        f"--model-init {args.model_init}",
        f"{what}: PoolingVQ trains on pre-trained encoders. Build the model from the official weights with "
        "`poolingvq import-weights --mert m-a-p/MERT-v1-95M --midibert CKPT --out DIR` and train with "
        "`--model-init DIR`"
        + (" (or give a pre-trained MIDI encoder with --midi-encoder)" if not_loaded == ["midi"] else "")
        + ", or pass --allow-random-encoders to train them as they are",
    )


def build_model(args: TrainingArguments) -> PoolingVQForMusicEmotion:
    """The frozen encoders from `--model-init` (the MIDI one from `--midi-encoder` when given), the trained parts
    fresh from `--seed`; `config.encoder_weights` says where the encoders' weights came from.

    A preset's encoders get random weights from a fixed seed (`ENCODER_SEED`) and a folder's (e.g. from
    `poolingvq import-weights`) are loaded: either way they do not depend on the run's seed, so every seed and
    every variant of an experiment shares one feature cache. The quantizer, fusion and head are (re)initialised
    from the run's seed, so seeds differ exactly where training happens.
    """
    midi_state, midi_config = None, None
    if args.midi_encoder is not None:
        midi_state, midi_config, _ = load_midibert(
            args.midi_encoder, args.midi_encoder_revision, flag="--midi-encoder"
        )
    config = init_config(args, midi_config)
    folder = model_init_dir(args)
    with torch.random.fork_rng():
        torch.manual_seed(ENCODER_SEED)
        if folder is None:
            model = PoolingVQForMusicEmotion(config)
        else:
            model = PoolingVQForMusicEmotion.from_pretrained(folder, config=config)
    if midi_state is not None:
        model.midi_encoder.load_state_dict(midi_state)
    for name in TRAINED_PARTS:
        part = getattr(model, name)
        if part is not None:
            for module in part.modules():
                model._init_weights(module)
    return model


def trained_parts(config: PoolingVQConfig) -> tuple[str, ...]:
    """The top-level modules a run with `config` trains: `TRAINED_PARTS`, and the MIDI encoder when it is
    fine-tuned (`finetune_midi_encoder`; it keeps its pre-trained start, it is not re-initialised)."""
    return TRAINED_PARTS + (("midi_encoder",) if config.finetune_midi_encoder else ())


def planned_pooling(args: TrainingArguments) -> str:
    """The pooling the run will use, known before the model is built."""
    return args.model_config_overrides().get("pooling") or init_config(args).pooling


def make_optimizer(model: PoolingVQForMusicEmotion, args: TrainingArguments) -> torch.optim.Adam:
    """Adam with the paper's two parameter groups, fusion + head and the quantizer's codebook, and a third,
    `midi_encoder` (`--lr-midi-encoder`, `--weight-decay-midi-encoder`), when the model fine-tunes its MIDI
    encoder."""
    quantizer = [
        p for p in (model.quantizer.parameters() if model.quantizer is not None else []) if p.requires_grad
    ]
    head = [p for p in [*model.fusion.parameters(), *model.classifier.parameters()] if p.requires_grad]
    groups = [{"params": head, "lr": args.lr_head, "weight_decay": args.weight_decay_head, "name": "head"}]
    if quantizer:
        groups.append(
            {
                "params": quantizer,
                "lr": args.lr_quantizer,
                "weight_decay": args.weight_decay_quantizer,
                "name": "quantizer",
            }
        )
    if model.config.finetune_midi_encoder:
        groups.append(
            {
                "params": [p for p in model.midi_encoder.parameters() if p.requires_grad],
                "lr": args.lr_midi_encoder,
                "weight_decay": args.weight_decay_midi_encoder,
                "name": "midi_encoder",
            }
        )
    return torch.optim.Adam(groups, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)


def trained_state(model: PoolingVQForMusicEmotion) -> dict[str, torch.Tensor]:
    """The weights that training changes (`trained_parts`: the frozen encoders' are left out), as a CPU copy."""
    parts = trained_parts(model.config)
    return {
        name: tensor.detach().cpu().clone()
        for name, tensor in model.state_dict().items()
        if name.split(".")[0] in parts
    }


# ---------------------------------------------------------------------------------------------------------- state


@dataclass
class TrainerState(RunState):
    """`RunState` and what the paper's recipe adds: the best validation macro-F1 and the epochs since it (early
    stopping)."""

    best_macro_f1: float = -1.0
    epochs_without_improvement: int = 0


# ---------------------------------------------------------------------------------------------------------- metrics


def classification_metrics(labels: Sequence[int], predictions: Sequence[int]) -> dict[str, Any]:
    """Accuracy, macro and weighted F1, per-class F1 and the confusion matrix over the four quadrants: the
    `music_emotion` metric's own computation, so a run's figures and the metric's cannot drift apart."""
    return music_emotion_scores(predictions, labels, labels=QUADRANT_LABELS)


class PoolingStatistics:
    """Running share of windows pooled by each rule, and the compression ratio (frames in / windows out)."""

    def __init__(self) -> None:
        self.rules = torch.zeros(len(POOLING_RULES), dtype=torch.long)
        self.frames = 0
        self.windows = 0

    def update(self, output: Any) -> None:
        if output.window_rules is not None:
            rules = output.window_rules.detach().cpu()
            self.rules += torch.bincount(rules[rules >= 0], minlength=len(POOLING_RULES))
        if output.audio_lengths is not None:
            self.frames += int(output.audio_lengths.sum())
            self.windows += int(output.pooled_lengths.sum())

    def summary(self) -> dict[str, float]:
        total = max(int(self.rules.sum()), 1)
        shares = {
            f"rule_share/{name}": float(count) / total
            for name, count in zip(POOLING_RULES, self.rules, strict=True)
        }
        if self.windows:
            shares["compression_ratio"] = self.frames / self.windows
        return shares


@torch.no_grad()
def evaluate(
    model: Any,
    loader: DataLoader,
    accelerator: Any,
    *,
    progress: bool = False,
    description: str = "evaluation",
) -> dict[str, Any]:
    """Loss and classification metrics over a loader (gathered over processes). `progress`: a bar (main process
    only)."""
    model.eval()
    losses, all_labels, all_predictions = [], [], []
    statistics = PoolingStatistics()
    bar = progress_bar(accelerator, progress, clips_in(loader), description)
    for batch in loader:
        output = model(**batch)
        statistics.update(output)
        labels, predictions, loss = accelerator.gather_for_metrics(
            (batch["labels"], output.logits.argmax(-1), output.loss.detach().expand(len(batch["labels"])))
        )
        losses.append(loss.float().cpu())
        all_labels.append(labels.cpu())
        all_predictions.append(predictions.cpu())
        advance(bar, len(labels))  # gathered: every process's clips
    bar.close()
    labels = torch.cat(all_labels).tolist()
    predictions = torch.cat(all_predictions).tolist()
    metrics = classification_metrics(labels, predictions)
    metrics["loss"] = float(torch.cat(losses).mean())
    metrics["count"] = len(labels)
    metrics.update(statistics.summary())
    return metrics


#: the inputs of one modality in a training batch: cached features, or for the MIDI of a run that fine-tunes its
#: MIDI encoder the CP tokens (`modality_reliance` swaps those the batch carries)
MODALITY_INPUTS = {
    "audio": ("audio_features", "audio_features_mask"),
    "midi": (
        "midi_features",
        "midi_features_mask",
        "midi_input_ids",
        "midi_attention_mask",
        "midi_statistics",
    ),
}


@torch.no_grad()
def modality_reliance(model: Any, loader: DataLoader, accelerator: Any) -> dict[str, float] | None:
    """How much the predictions rest on each modality: the mean total-variation distance between a clip's
    predicted quadrant distribution and the one it gets when that modality's input is another clip's (the batch
    rolled by one), the other modality kept. 0: the modality is ignored; up to 1: it decides alone.

    Accuracy cannot tell a fusion that uses both modalities from one that learnt to ignore one of them; this can.
    None for single-modality models (and for a loader of one-clip batches, where nothing can be swapped).
    """
    if accelerator.unwrap_model(model).config.modalities != "audio+midi":
        return None
    model.eval()
    distances: dict[str, list[torch.Tensor]] = {name: [] for name in MODALITY_INPUTS}
    for batch in loader:
        if len(batch["labels"]) < 2:
            continue
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        probabilities = model(**inputs).logits.float().softmax(-1)
        for name, keys in MODALITY_INPUTS.items():
            swapped = {**inputs, **{key: inputs[key].roll(1, dims=0) for key in keys if key in inputs}}
            other = model(**swapped).logits.float().softmax(-1)
            distance = 0.5 * (probabilities - other).abs().sum(-1)  # [B]
            distances[name].append(accelerator.gather_for_metrics(distance).cpu())
    if not distances["audio"]:
        return None
    return {name: float(torch.cat(values).mean()) for name, values in distances.items()}


# ---------------------------------------------------------------------------------------------------------- run


#: The trained parts' weights at the best epoch so far, beside the checkpoints (the model folder is written from
#: them when training ends).
BEST_WEIGHTS_FILENAME = "best_trained_weights.safetensors"


@dataclass
class SplitFeatures:
    """The clips of each split whose features are cached: their feature-cache keys, labels and MIDI files, in one
    order (with `--extra-soundfonts`, a training clip's other renderings are more keys with the clip's label and
    MIDI file; with `--transcribed-training-audio`, more keys whose MIDI is a transcription, marked in
    `transcribed`). `midi_tokens`: each key's CP tokens, filled (`tokenize_midi`) only when the MIDI encoder is
    fine-tuned."""

    keys: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, list[int]] = field(default_factory=dict)
    midi_paths: dict[str, list[str]] = field(default_factory=dict)
    transcribed: dict[str, list[bool]] = field(default_factory=dict)
    midi_tokens: dict[str, list[torch.Tensor]] | None = None
    midi_statistics: dict[str, torch.Tensor] | None = None

    def add(
        self,
        split: str,
        keys: Sequence[str],
        labels: Sequence[int],
        midi_paths: Sequence[str] = (),
        transcribed: bool = False,
    ) -> None:
        self.keys.setdefault(split, []).extend(keys)
        self.labels.setdefault(split, []).extend(labels)
        self.midi_paths.setdefault(split, []).extend(midi_paths)
        self.transcribed.setdefault(split, []).extend([transcribed] * len(keys))

    def tokenize_midi(self, processor: PoolingVQProcessor) -> None:
        """`midi_tokens` from `midi_paths`: each clip's MIDI tokenized once with the run's processor, its kept rows
        joined, as extraction tokenizes it (`features.midi_token_sequences`)."""
        from .features import midi_token_sequences

        tokens: dict[str, list[torch.Tensor]] = {}
        for split, paths in self.midi_paths.items():
            if len(paths) != len(self.keys[split]):
                raise ValueError(f"{split}: {len(self.keys[split])} keys but {len(paths)} MIDI files")
            tokens[split] = midi_token_sequences(paths, processor.midi_tokenizer, processor.midi_max_rows)
        self.midi_tokens = tokens

    def read_statistics(self, transcribed_statistics: str = "unknown") -> None:
        """`midi_statistics` from `midi_paths`: each MIDI file's performance statistics `[N, S]` per split, read
        once per file (a clip's several renderings share its MIDI); a transcription's read as
        `transcribed_statistics` says (`PoolingVQConfig.transcribed_statistics`: `"unknown"` ones NaN)."""
        from .performance_poolingvq import performance_statistics

        rows: dict[tuple[str, bool], torch.Tensor] = {}
        statistics: dict[str, torch.Tensor] = {}
        for split, paths in self.midi_paths.items():
            if len(paths) != len(self.keys[split]):
                raise ValueError(f"{split}: {len(self.keys[split])} keys but {len(paths)} MIDI files")
            sources = list(zip(paths, self.transcribed[split], strict=True))
            for path, transcribed in sources:
                if (path, transcribed) not in rows:
                    rows[path, transcribed] = torch.from_numpy(
                        performance_statistics(
                            path, transcribed=transcribed, transcribed_statistics=transcribed_statistics
                        )
                    )
            statistics[split] = torch.stack([rows[source] for source in sources])
        self.midi_statistics = statistics


@dataclass
class FittedRun:
    """What `fit` leaves for `evaluate_best`: the prepared model, its evaluation loaders and the run's state."""

    model: Any
    validation_loader: DataLoader
    test_loader: DataLoader
    state: TrainerState


def train(args: TrainingArguments, clips: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Run the whole recipe; returns the metrics written to `metrics.json`.

    `clips`: the clips to train on, `{"train": [...], "validation": [...], "test": [...]}`, each clip a dict
    `{"id", "midi_path", "audio_path", "label"}` (`audio_path` None: synthesized), the form `load_split_clips`
    returns; default: the data set's official split that `args` names. `--max-*-samples` apply to them either way.

    The steps, in order: `check_run`, `prepare_features`, `init_from_cache`, `fit`, `evaluate_best`,
    `save_outputs`.
    """
    from accelerate.utils import set_seed

    from .features import FeatureCache

    planned = check_run(args)
    accelerator = training_accelerator(args, planned)
    if args.push_to_hub is not None and accelerator.is_main_process:
        # as transformers.Trainer does: a missing token or a refused name fails now, not after the training
        publish.create_repo(args.push_to_hub, private=args.hub_private_repo)
    set_seed(args.seed)
    model = build_model(args)
    output_dir = Path(args.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    clips = chosen_clips(args, load_split_clips(args) if clips is None else clips)
    cache = FeatureCache(feature_cache_dir(args))
    processor = PoolingVQProcessor.for_model(model.config, midi_mode=args.midi_mode, soundfont=args.soundfont)
    features = prepare_features(model, clips, cache, processor, args, accelerator)
    if model.config.finetune_midi_encoder:  # its features change as it trains: it reads tokens, not the cache
        features.tokenize_midi(processor)
    if model.config.reads_midi_statistics:
        features.read_statistics(model.config.transcribed_statistics)
    if not args.resume:  # a checkpoint holds the trained codebook and the fusion's statistics
        init_from_cache(model, cache, features, args)
    run = fit(model, cache, features, args, accelerator)
    unwrapped = accelerator.unwrap_model(run.model)
    metrics = {
        "dataset": args.dataset,
        "config": args.config,
        "best_epoch": run.state.best_epoch,
        "epochs_run": run.state.epoch,
        **evaluate_best(run, args, accelerator),
        "train_clips": len(features.keys["train"]),
        "history": run.state.history,
        "encoder_weights": provenance.encoder_weights(unwrapped.config),
        "accelerate": {
            "mixed_precision": accelerator.mixed_precision,
            "num_processes": accelerator.num_processes,
            "device": accelerator.device.type,
            "distributed_type": str(accelerator.distributed_type.value),
        },
        "arguments": dataclasses.asdict(args),
    }
    if accelerator.is_main_process:
        save_outputs(output_dir, args, metrics, unwrapped, processor)
    accelerator.end_training()
    return metrics


def check_run(args: TrainingArguments) -> PoolingVQConfig:
    """Refuse, before anything heavy starts, what makes no run: counts (`check_arguments`), encoders never loaded
    (unless allowed), a model that cannot be found, a push without a model folder or to an invalid repo id.
    Returns the run's planned model configuration."""
    check_arguments(args)
    planned = init_config(args)
    check_encoders_loaded(args, planned)
    if args.audio_tilt_augmentation and planned.audio_encoder_kind != "logmel":
        raise PoolingVQInputError(
            "--audio-tilt-augmentation",
            "tilts log-mel frames: the model's audio encoder is not the log-mel one",
        )
    if args.statistics_dropout is not None:
        if not planned.reads_midi_statistics:
            raise PoolingVQInputError("--statistics-dropout", "the model reads no performance statistics")
        if not 0.0 <= args.statistics_dropout < 1.0:
            raise PoolingVQInputError(
                "--statistics-dropout", f"must be in [0, 1), got {args.statistics_dropout}"
            )
    if args.transpose_midi is not None:
        if not planned.finetune_midi_encoder:
            raise PoolingVQInputError(
                "--transpose-midi",
                "transposes CP tokens, which only a fine-tuned MIDI encoder reads (--finetune-midi-encoder); "
                "cached MIDI features cannot be transposed",
            )
        if not 0 <= args.transpose_midi <= MAX_TRANSPOSITION:
            raise PoolingVQInputError(
                "--transpose-midi", f"must be in 0..{MAX_TRANSPOSITION} semitones, got {args.transpose_midi}"
            )
    if args.weight_average_decay is not None and not 0.0 < args.weight_average_decay < 1.0:
        raise PoolingVQInputError(
            "--weight-average-decay", f"must be in (0, 1), got {args.weight_average_decay}"
        )
    if args.transcribed_training_audio:
        if planned.modalities != "audio+midi":
            raise PoolingVQInputError(
                "--transcribed-training-audio", "pairs audio with its transcribed notes: the model reads both"
            )
        if not transcription_available():
            raise PoolingVQInputError("--transcribed-training-audio", INSTALL_HINT)
    if planned.finetune_midi_encoder and planned.modalities == "audio":
        raise PoolingVQInputError(
            "--finetune-midi-encoder", "an audio-only model (--modalities audio) has no MIDI encoder to train"
        )
    if args.push_to_hub is not None:
        if not args.save_model:
            raise PoolingVQInputError("--push-to-hub", "--no-save-model writes no model folder to upload")
        publish.check_repo_id(args.push_to_hub, flag="--push-to-hub")
    return planned


def training_accelerator(args: TrainingArguments, planned: PoolingVQConfig) -> Any:
    """The run's Accelerator (`run_loop.make_accelerator`): tensorboard logs in `--logging-dir` when tensorboard is
    installed, and `--mixed-precision` only when given, so that otherwise Accelerate's own choice (accelerate
    launch / config / ACCELERATE_* environment) holds."""
    from accelerate.utils import DistributedDataParallelKwargs

    output_dir = Path(args.output_dir)
    return make_accelerator(
        output_dir,
        logging_dir=args.logging_dir or str(output_dir / "logs"),
        **({"mixed_precision": args.mixed_precision} if args.mixed_precision is not None else {}),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with="tensorboard" if _tensorboard_available() else None,
        # without pooling the codebook takes no part in the loss: DDP must not wait for its gradient
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=planned.pooling == "none")],
    )


def chosen_clips(
    args: TrainingArguments, clips: dict[str, list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """`clips` cut to `--max-train-samples` / `--max-eval-samples` (a seeded random subset, `--data-seed`)."""
    missing = {"train", "validation", "test"} - set(clips)
    if missing:
        raise PoolingVQInputError("clips", f"no {', '.join(sorted(missing))} split to train and evaluate on")
    chosen = dict(clips)
    chosen["train"] = subset(clips["train"], args.max_train_samples, args.data_seed)
    for split in ("validation", "test"):
        chosen[split] = subset(clips[split], args.max_eval_samples, args.data_seed)
    return chosen


def prepare_features(
    model: PoolingVQForMusicEmotion,
    clips: dict[str, list[dict[str, Any]]],
    cache: Any,
    processor: PoolingVQProcessor,
    args: TrainingArguments,
    accelerator: Any,
) -> SplitFeatures:
    """Step 2: the frozen encoders run once per clip (and per `--extra-soundfonts` rendering of a training clip
    without a recording, and per `--transcribed-training-audio` transcription of one) into `cache`, sharded over
    processes; clips already cached are not run again. A clip that fails (unreadable MIDI...) is left out with a
    warning. Returns the cached clips' keys and labels per split."""
    from .features import extract_features

    features = SplitFeatures()
    extra_soundfonts = [path for path in (args.extra_soundfonts or "").split(",") if path]
    renderings = [
        (split, soundfont, False)
        for split in clips
        for soundfont in [args.soundfont, *(extra_soundfonts if split == "train" else [])]
    ]
    if args.transcribed_training_audio:
        renderings += [("train", soundfont, True) for soundfont in [args.soundfont, *extra_soundfonts]]
    for split, soundfont, transcribed in renderings:
        split_clips = clips[split]
        if soundfont != args.soundfont or transcribed:  # clips with a recording have theirs already
            split_clips = [clip for clip in split_clips if clip.get("audio_path") is None]
        if transcribed:
            split_clips = transcribed_renderings(
                split_clips, soundfont, feature_cache_dir(args) / "transcriptions", processor
            )
        bar = progress_bar(accelerator, args.progress, len(split_clips), f"features ({split})", leave=True)
        result = extract_features(
            model.to(accelerator.device),
            split_clips,
            cache,
            accelerator=accelerator,
            batch_size=args.extraction_batch_size,
            feature_extractor=processor.feature_extractor,
            tokenizer=processor.midi_tokenizer,
            max_midi_rows=processor.midi_max_rows,
            synthesis_kwargs={"soundfont": soundfont, "level": processor.synthesis_level},
            num_workers=args.extraction_workers,
            # the main process sees its own shard only: every process takes as many clips, so scale by their number
            on_batch_stored=lambda ids, bar=bar: advance(bar, len(ids) * accelerator.num_processes),
        )
        advance(bar, len(split_clips))  # the rest were already cached (or failed)
        bar.close()
        for failure in result.failures:
            logger.warning("%s clip left out: %s", split, failure)
        clip_of = dict(zip(result.keys, split_clips, strict=True))  # one key: the same bytes, the same label
        keys = result.cached_keys
        features.add(
            split,
            keys,
            [clip_of[key]["label"] for key in keys],
            [str(clip_of[key]["midi_path"]) for key in keys],
            transcribed=transcribed,
        )
    model.cpu()
    return features


def transcribed_renderings(
    clips: Sequence[dict[str, Any]], soundfont: str | None, folder: Path, processor: PoolingVQProcessor
) -> list[dict[str, Any]]:
    """Each clip as a recording alone is read: its rendering with `soundfont` (24-bit FLAC) and the notes that
    basic-pitch transcribes from it (MIDI), both kept in `folder` under the key of the MIDI's bytes and the
    rendering's settings (`cache_keys`, as the feature cache keys synthesized audio), so they are made once.
    Returns clips `{"id", "midi_path": the transcription, "audio_path": the rendering, "label"}`; a clip that fails
    to render or transcribe is left out with a warning."""
    import soundfile

    from .cache_keys import file_sha256, key_of, synthesis_settings
    from .files_poolingvq import atomic_path, atomic_write_bytes
    from .transcription_poolingvq import TRANSCRIBER, transcribe_audio

    rate = processor.sampling_rate
    settings = {
        "synthesis": synthesis_settings(soundfont, level=processor.synthesis_level),
        "sampling_rate": rate,
        "max_seconds": processor.feature_extractor.max_seconds,
        "transcriber": TRANSCRIBER,
    }
    folder.mkdir(parents=True, exist_ok=True)
    result = []
    for clip in clips:
        try:
            name = key_of({**settings, "midi_sha256": file_sha256(clip["midi_path"])})[:24]
        except PoolingVQInputError as error:
            logger.warning("train clip %s not transcribed: %s", clip["id"], error)
            continue
        audio, midi = folder / f"{name}.flac", folder / f"{name}.mid"
        if not (audio.is_file() and midi.is_file()):
            try:
                waveform = processor.synthesize(clip["midi_path"], soundfont=soundfont)
                notes = transcribe_audio(waveform, rate, source=clip["midi_path"])
            except PoolingVQInputError as error:
                logger.warning("train clip %s not transcribed: %s", clip["id"], error)
                continue
            with atomic_path(audio) as temporary:
                soundfile.write(temporary, waveform, rate, format="FLAC", subtype="PCM_24")
            atomic_write_bytes(midi, notes)
        result.append(
            {
                "id": f"{clip['id']}@transcribed",
                "midi_path": str(midi),
                "audio_path": str(audio),
                "label": clip["label"],
            }
        )
    return result


def init_from_cache(
    model: PoolingVQForMusicEmotion, cache: Any, features: SplitFeatures, args: TrainingArguments
) -> None:
    """Step 3, on the cached training features: the fusion's audio statistics (when it standardizes), the
    standardization of the MIDI's performance statistics over the training clips (`midi_statistics`), and the
    codebook from cosine k-means on the frames of a seeded random `--codebook-fraction` of the training clips
    (when the model pools)."""
    from .features import fit_audio_standardization_from_cache, init_codebook_from_cache

    train_keys = features.keys["train"]
    if model.config.reads_midi_statistics:
        if features.midi_statistics is None:
            raise ValueError("the model reads MIDI statistics: call features.read_statistics() first")
        # on the MIDI files' statistics only: a transcription's unknown ones (NaN) are read as their mean, and
        # read as transcribed they are measured on the performances' scale
        performed = ~torch.tensor(features.transcribed["train"], dtype=torch.bool)
        model.fusion.statistics_projection[0].fit([features.midi_statistics["train"][performed]])
    fit_audio_standardization_from_cache(model, cache, train_keys, args.codebook_fraction, args.seed)
    if model.quantizer is not None and model.config.pooling != "none":
        init_codebook_from_cache(
            model,
            cache,
            train_keys,
            fraction=args.codebook_fraction,
            max_frames=args.kmeans_max_frames,
            num_iters=args.kmeans_iters,
            seed=args.seed,
        )


def fit(
    model: PoolingVQForMusicEmotion,
    cache: Any,
    features: SplitFeatures,
    args: TrainingArguments,
    accelerator: Any,
) -> FittedRun:
    """Step 4, the recipe on the cached features (`run_loop.run_epochs`): Adam with two parameter groups (three
    when the MIDI encoder is fine-tuned: it then reads `features.midi_tokens`, not cached MIDI features),
    ReduceLROnPlateau on the validation loss, early stopping on the validation macro-F1; the best epoch's trained
    weights in `BEST_WEIGHTS_FILENAME`, a checkpoint after every epoch, `--resume` from the newest one."""
    from .features import CachedFeatureDataset, collate_cached_features

    if model.config.finetune_midi_encoder and features.midi_tokens is None:
        raise ValueError(
            "the model fine-tunes its MIDI encoder, which reads CP tokens: call features.tokenize_midi(processor)"
        )

    def loader(split: str, shuffle: bool) -> DataLoader:
        tokens = None if features.midi_tokens is None else features.midi_tokens[split]
        statistics = None if features.midi_statistics is None else features.midi_statistics[split]
        dataset = CachedFeatureDataset(
            cache,
            features.keys[split],
            features.labels[split],
            midi_tokens=tokens,
            midi_statistics=statistics,
        )
        return DataLoader(
            dataset,
            batch_size=args.batch_size,
            shuffle=shuffle,
            collate_fn=collate_cached_features,
            num_workers=args.num_workers,
        )

    train_loader, val_loader, test_loader = (
        loader("train", True),
        loader("validation", False),
        loader("test", False),
    )
    optimizer = make_optimizer(model, args)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="min",
        factor=args.plateau_factor,
        patience=args.plateau_patience,
        threshold=args.plateau_threshold,
    )
    model, optimizer, train_loader, val_loader, test_loader = accelerator.prepare(
        model, optimizer, train_loader, val_loader, test_loader
    )
    state = TrainerState()
    output_dir = Path(args.output_dir)
    checkpoints = output_dir / "checkpoints"
    unwrapped = accelerator.unwrap_model(model)
    average = weight_average(unwrapped, args.weight_average_decay)
    checkpointed = [scheduler, state] if average is None else [scheduler, state, average]
    resumed = register_and_resume(accelerator, checkpointed, checkpoints, resume=args.resume)
    if resumed is not None:
        logger.info("resumed from %s after epoch %d", resumed, state.epoch)
    accelerator.init_trackers("poolingvq", config={k: v for k, v in vars(args).items() if v is not None})
    # what is evaluated, kept as the best and shipped: the averaged weights when there are
    evaluated = model if average is None else average.module

    def end_epoch(result: EpochResult) -> None:
        train_metrics, val_metrics = result.train, result.evaluation
        scheduler.step(val_metrics["loss"])
        if result.improved:
            state.best_macro_f1 = val_metrics["macro_f1"]
            state.epochs_without_improvement = 0
        else:
            state.epochs_without_improvement += 1
        record = {
            "epoch": result.epoch,
            **{f"train/{k}": v for k, v in train_metrics.items()},
            **{f"val/{k}": v for k, v in val_metrics.items() if isinstance(v, (int, float))},
            **{f"lr/{group['name']}": group["lr"] for group in optimizer.param_groups},
        }
        state.history.append(record)
        accelerator.log(record, step=result.epoch)
        accelerator.print(
            f"epoch {result.epoch}: train loss {train_metrics['loss']:.4f}, val loss {val_metrics['loss']:.4f}, "
            f"val acc {val_metrics['accuracy']:.3f}, val macro-F1 {val_metrics['macro_f1']:.3f}"
            + (" (best)" if result.improved else "")
        )

    run_epochs(
        accelerator,
        state,
        checkpoints,
        data_order=train_loader,
        keep_going=lambda: (
            state.epoch < args.epochs and state.epochs_without_improvement < args.early_stopping_patience
        ),
        train_epoch=lambda epoch: train_one_epoch(
            model,
            train_loader,
            optimizer,
            accelerator,
            progress=args.progress,
            description=f"epoch {epoch + 1}",
            augment=batch_augmentation(args, accelerator.unwrap_model(model).config),
            after_step=None if average is None else lambda: average.update_parameters(unwrapped),
        ),
        evaluate=lambda epoch: evaluate(
            evaluated,
            val_loader,
            accelerator,
            progress=args.progress,
            description=f"epoch {epoch + 1} validation",
        ),
        is_better=lambda val_metrics: val_metrics["macro_f1"] > state.best_macro_f1,
        save_best=lambda: save_tensors_atomically(
            trained_state(accelerator.unwrap_model(evaluated)), output_dir / BEST_WEIGHTS_FILENAME
        ),
        end_epoch=end_epoch,
    )
    return FittedRun(model, val_loader, test_loader, state)


def evaluate_best(run: FittedRun, args: TrainingArguments, accelerator: Any) -> dict[str, dict[str, Any]]:
    """Step 5: the best epoch's weights, evaluated on validation and, once, on test (with how much its test
    predictions rest on each modality, `modality_reliance`). Returns `{"validation": ..., "test": ...}`."""
    accelerator.wait_for_everyone()
    best = load_file(Path(args.output_dir) / BEST_WEIGHTS_FILENAME)
    accelerator.unwrap_model(run.model).load_state_dict(best, strict=False)
    progress = args.progress
    val_metrics = evaluate(
        run.model, run.validation_loader, accelerator, progress=progress, description="validation"
    )
    test_metrics = evaluate(run.model, run.test_loader, accelerator, progress=progress, description="test")
    reliance = modality_reliance(run.model, run.test_loader, accelerator)
    if reliance is not None:
        test_metrics["modality_reliance"] = reliance
    return {"validation": val_metrics, "test": test_metrics}


def save_outputs(
    output_dir: Path,
    args: TrainingArguments,
    metrics: dict[str, Any],
    model: PoolingVQForMusicEmotion,
    processor: PoolingVQProcessor,
) -> None:
    """Step 6, in the main process: `metrics.json`, and unless `--no-save-model` the model folder (weights,
    config, processor, model card), uploaded to `--push-to-hub` when given."""
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if not args.save_model:
        return
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    write_model_card(output_dir, args, metrics, model.config)
    if args.push_to_hub is not None:
        staged = publish.push_model_folder(output_dir, args.push_to_hub, private=args.hub_private_repo)
        logger.info("uploaded %s to https://huggingface.co/%s", ", ".join(staged.files), args.push_to_hub)


def tilt_log_mel(
    frames: torch.Tensor, num_mel_bins: int, max_tilt: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Each clip's log-mel bins `[B, T, :num_mel_bins]` tilted by its own random slope: bin k gains
    `s * (k / (num_mel_bins - 1) - 1/2)`, with s uniform in [-max_tilt, max_tilt]; the other channels (chroma,
    key profile, onsets) unchanged. An equaliser in the log domain: pianos, rooms and microphones differ this way,
    and a model trained on two synthesized pianos otherwise learns their brightness as loudness (a held-out piano
    with 0.78 standard deviations less energy in its upper mel bins was heard as calm)."""
    slopes = (torch.rand(frames.shape[0], generator=generator) * 2 - 1) * max_tilt  # [B]
    ramp = torch.linspace(-0.5, 0.5, num_mel_bins)  # [M]
    tilt = (slopes[:, None] * ramp[None, :]).to(frames.device, frames.dtype)  # [B, M]
    tilted = frames.clone()
    tilted[..., :num_mel_bins] += tilt[:, None, :]
    return tilted


def hide_statistics(
    statistics: torch.Tensor, probability: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """`statistics` `[B, S]` with, in each row with `probability`, the ones a transcription cannot know
    (`UNKNOWN_FROM_TRANSCRIPTION`) set to NaN: unknown, which the model reads as the training clips' mean
    (`--statistics-dropout`). Measured on EMOPIA (0.5, 3 seeds): validation macro-F1 0.678 against 0.683, a
    recording alone 0.596 against 0.584: within the spread of seeds, so off by default."""
    from .performance_poolingvq import TRANSCRIPTION_UNKNOWN_INDEX

    hidden = torch.rand(statistics.shape[0], generator=generator) < probability  # [B]
    columns = torch.zeros(statistics.shape[1], dtype=torch.bool)
    columns[torch.from_numpy(TRANSCRIPTION_UNKNOWN_INDEX)] = True
    mask = (hidden[:, None] & columns[None, :]).to(statistics.device)  # [B, S]
    return statistics.masked_fill(mask, float("nan"))


#: The widest `--transpose-midi`: an octave either way (a wider shift is an octave and a smaller one).
MAX_TRANSPOSITION = 12


def transpose_notes(
    batch: dict[str, torch.Tensor], max_semitones: int, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """`batch` with each clip's notes transposed by its own random whole number of semitones in
    [-max_semitones, max_semitones] (`--transpose-midi`, as `pretrain-midi --transpose` does): the Pitch field of
    its real CP tokens (`midi_input_ids` `[B, L, 4]`, padded with PAD, as `collate_cached_features` pads) and its
    pitch-level statistics (`PITCH_LEVEL_STATISTICS`, by k / 127; `midi_statistics` `[B, S]`, when there). A shift
    that would carry a note out of MIDI-BERT's range 0..85 is cut to the widest that does not. Why: 767 training
    clips hold each mood in a few keys, and a small encoder can learn the key as the mood; a listener hears a piece
    a tone higher as the same piece. The cached audio keeps its key (it would have to be synthesized and encoded
    again per shift)."""
    from .performance_poolingvq import PITCH_LEVEL_INDEX
    from .pretraining import random_transpositions, transpose_rows  # the pre-training's key augmentation

    shift = random_transpositions(batch["midi_input_ids"], max_semitones, generator)  # [B]
    transposed = dict(batch)
    transposed["midi_input_ids"] = transpose_rows(batch["midi_input_ids"], shift)
    if "midi_statistics" in batch:
        statistics = batch["midi_statistics"].clone()
        levels = torch.from_numpy(PITCH_LEVEL_INDEX).to(statistics.device)
        statistics[:, levels] += (shift[:, None] / 127).to(statistics.dtype)
        transposed["midi_statistics"] = statistics
    return transposed


def batch_augmentation(
    args: TrainingArguments, config: PoolingVQConfig
) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None:
    """The training batches' augmentation (`--audio-tilt-augmentation`, `--statistics-dropout`,
    `--transpose-midi`), or None."""
    if not args.audio_tilt_augmentation and not args.statistics_dropout and not args.transpose_midi:
        return None
    num_mel_bins = getattr(config.audio_config, "num_mel_bins", 0)

    def augment(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        batch = dict(batch)
        if args.audio_tilt_augmentation and "audio_features" in batch:
            batch["audio_features"] = tilt_log_mel(
                batch["audio_features"], num_mel_bins, args.audio_tilt_augmentation
            )
        if args.transpose_midi and "midi_input_ids" in batch:
            batch = transpose_notes(batch, args.transpose_midi)
        if args.statistics_dropout and "midi_statistics" in batch:
            batch["midi_statistics"] = hide_statistics(batch["midi_statistics"], args.statistics_dropout)
        return batch

    return augment


def weight_average(model: PoolingVQForMusicEmotion, decay: float | None) -> Any:
    """An exponential moving average of `model`'s weights (`--weight-average-decay`; torch's `AveragedModel`,
    its buffers, fitted before training, copied as they are), or None without a decay. Why: on a few hundred
    clips, validation macro-F1 jumps by up to 0.1 from one epoch to the next (lr 1e-3), so the epoch picked as the
    best is partly luck; the average of the last steps' weights moves smoothly. Measured on EMOPIA (0.99, about
    one epoch; seeds 42 / 43): smoother curves but lower best epochs, 0.657 / 0.651 against 0.687 / 0.695, so off
    by default."""
    if decay is None:
        return None
    if not 0.0 < decay < 1.0:
        raise ValueError(f"--weight-average-decay must be in (0, 1), got {decay}")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))


def train_one_epoch(
    model: Any,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    accelerator: Any,
    *,
    progress: bool = False,
    description: str = "train",
    augment: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    after_step: Callable[[], None] | None = None,
) -> dict:
    """One pass over `loader`; the mean losses and pooling statistics. `progress`: a bar (main process only).
    `augment`: applied to each batch before the model sees it (`batch_augmentation`); `after_step`: called after
    each optimizer step (the weight average's update)."""
    model.train()
    totals = {"loss": 0.0, "cross_entropy": 0.0, "vq_loss": 0.0}
    steps = 0
    statistics = PoolingStatistics()
    bar = progress_bar(accelerator, progress, clips_in(loader), description)
    for batch in loader:
        if augment is not None:
            batch = augment(batch)
        with accelerator.accumulate(model):
            output = model(**batch)
            accelerator.backward(output.loss)
            optimizer.step()
            optimizer.zero_grad()
        if after_step is not None and accelerator.sync_gradients:
            after_step()
        statistics.update(output)
        loss, vq_loss = float(output.loss.detach()), float(output.vq_loss.detach())
        totals["loss"] += loss
        totals["vq_loss"] += vq_loss
        totals["cross_entropy"] += loss - model_vq_weight(model, accelerator) * vq_loss
        steps += 1
        advance(bar, len(batch["labels"]) * accelerator.num_processes)
        bar.set_postfix(loss=f"{totals['loss'] / steps:.4f}", refresh=False)
    bar.close()
    metrics = {key: value / max(steps, 1) for key, value in totals.items()}
    metrics.update(statistics.summary())
    return metrics


def progress_bar(
    accelerator: Any, enabled: bool, total: int | None, description: str, leave: bool = False
) -> Any:
    """A tqdm bar counting clips (clips/s, ETA) on the main process; a disabled one elsewhere, when `enabled` is
    False, and when the output is not a terminal (tqdm's `disable=None`), so logs and CI output stay clean."""
    from tqdm.auto import tqdm

    disable = None if enabled and accelerator.is_main_process else True
    return tqdm(total=total, desc=description, unit="clip", dynamic_ncols=True, leave=leave, disable=disable)


def advance(bar: Any, clips: int) -> None:
    """Move `bar` on by `clips`, never past its total (the last batch of every process may repeat clips to even
    the batches out)."""
    if bar.total is not None:
        clips = min(clips, bar.total - bar.n)
    if clips > 0:
        bar.update(clips)


def clips_in(loader: Any) -> int | None:
    """The clips one pass over `loader` covers, over all processes (None when it cannot tell)."""
    dataset = getattr(loader, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None


def model_vq_weight(model: Any, accelerator: Any) -> float:
    return float(accelerator.unwrap_model(model).config.vq_loss_weight)


def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------- card


def encoder_shape(encoder_config: Any) -> str:
    """`layers x width` of a transformer encoder's config (the audio encoder describes itself:
    `PoolingVQConfig.audio_encoder_description`)."""
    return f"{encoder_config.num_hidden_layers} x {encoder_config.hidden_size}"


def encoder_note(args: TrainingArguments, config: PoolingVQConfig) -> str:
    """What the model card says the frozen encoders are, from the record of where their weights came from."""
    records = provenance.encoder_weights(config)
    audio, midi = (provenance.describe(records[name]) for name in ("audio", "midi"))
    note = f"The audio encoder holds {audio}; the MIDI encoder holds {midi}"
    if config.finetune_midi_encoder:
        note = (
            f"The audio encoder holds {audio}; the MIDI encoder started from {midi} and was fine-tuned here"
        )
    not_loaded = provenance.encoders_not_loaded(config)
    if not_loaded:
        note += (
            f" ({' and '.join(not_loaded)} never loaded pre-trained weights: trained with --allow-random-encoders, "
            "these are not the paper's encoders)"
        )
    return note


#: Fields that change no result: the card's training command leaves them out (and the publishing ones would upload
#: again from whoever re-runs the command).
UNRECORDED_FIELDS = ("resume", "progress", "push_to_hub", "hub_private_repo")


#: Fields that change nothing unless the run fine-tunes its MIDI encoder: the card's command of a run that does
#: not leaves them out at their defaults (as it read before they existed).
MIDI_FINETUNING_FIELDS = ("lr_midi_encoder", "weight_decay_midi_encoder")


def training_flags(args: TrainingArguments) -> list[str]:
    """The flags that give `args` again, each a shell word or two (quoted where needed): every set value, and each
    switch away from its default (`--flag` / `--no-flag`, as `add_dataclass_arguments` names them); resuming,
    progress bars and publishing change no result and are left out (`UNRECORDED_FIELDS`), and so are the MIDI
    encoder's learning rate and weight decay at their defaults when it is not fine-tuned."""
    flags = []
    for spec in dataclasses.fields(args):
        value, flag = getattr(args, spec.name), spec.name.replace("_", "-")
        if spec.name in UNRECORDED_FIELDS or value is None:
            continue
        unused = spec.name in MIDI_FINETUNING_FIELDS and not args.finetune_midi_encoder
        if unused and value == spec.default:
            continue
        if isinstance(value, bool):
            if value != spec.default:
                flags.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            flags.append(f"--{flag} {shlex.quote(str(value))}")
    return flags


#: Each data set's name, home page and licence (the licence as `poolingvq.data` states it, a Hub licence id).
#: Neither is on the Hub under an id of its own, so the card names them in its text and gives no `datasets:`.
DATASET_CARDS = {
    "emopia": ("EMOPIA", "https://annahung31.github.io/EMOPIA/", "cc-by-nc-sa-4.0"),
    "vgmidi": ("VGMIDI", "https://github.com/lucasnfe/vgmidi", "unknown"),
}
#: What the licence of a model trained on each data set is, in the card's words.
LICENCE_NOTES = {
    "cc-by-nc-sa-4.0": "EMOPIA is released under CC BY-NC-SA 4.0, so this model is too: non-commercial use, "
    "attribution, and derivatives under the same licence",
    "unknown": "VGMIDI's repository states no licence: ask its authors before any use beyond research",
}


def base_models(args: TrainingArguments, config: PoolingVQConfig) -> list[str]:
    """The Hub repos whose weights this model holds: `--model-init` when it is a Hub repo id, and each encoder
    whose record (`config.encoder_weights`) says it came from the Hub (a repo id with the commit it resolved to).
    Local folders, checkpoints and presets are no Hub repo and are left out (the card's text names them)."""
    repos = []
    if args.model_init not in PRESETS and not is_local(args.model_init):
        repos.append(args.model_init)
    for record in provenance.encoder_weights(config).values():
        source = record.get("source")
        if record.get("kind") == "pretrained" and record.get("revision") and source and not is_local(source):
            repos.append(str(source))
    return list(dict.fromkeys(repos))


def audio_source(args: TrainingArguments) -> str:
    """Where the card says the training audio came from: `--audio-dir`, the prepared dataset's recordings (where
    it has them), or synthesis."""
    synthesized = "synthesized from the MIDI with a General MIDI soundfont"
    if args.audio_dir:
        return "from " + args.audio_dir
    if args.dataset_path:
        return f"from the recordings of {args.dataset_path} where it has them, else {synthesized}"
    return synthesized


def midi_encoder_training(args: TrainingArguments, config: PoolingVQConfig) -> str:
    """How the run treated the MIDI encoder, in the card's words: frozen (the paper), or fine-tuned with the head."""
    if not config.finetune_midi_encoder:
        return "frozen"
    return (
        f"fine-tuned with the head by --finetune-midi-encoder at lr {args.lr_midi_encoder:g}, weight decay "
        f"{args.weight_decay_midi_encoder:g}, where the paper freezes it"
    )


def write_model_card(
    folder: Path, args: TrainingArguments, metrics: dict[str, Any], config: PoolingVQConfig
) -> None:
    """README.md with the Hub's YAML metadata, whose `model-index` holds the measured validation and test results.

    Every field is one that holds: `license` from the data set (`DATASET_CARDS`), `base_model` only for real Hub
    repos (`base_models`), no `datasets:` (EMOPIA and VGMIDI have no Hub ids; the text links them),
    `pipeline_tag: other` since transformers' `audio-classification` pipeline cannot feed the MIDI a PoolingVQ
    model reads (`pipeline("music-emotion", ..., trust_remote_code=True)` can, as the usage block shows), and a
    training command that `poolingvq train` parses back to these arguments.
    """
    from huggingface_hub import EvalResult, ModelCardData

    dataset_name, homepage, licence = DATASET_CARDS[args.dataset]
    results = []
    for split in ("validation", "test"):
        for metric, name in (("accuracy", "Accuracy"), ("macro_f1", "Macro F1")):
            results.append(
                EvalResult(
                    task_type="audio-classification",
                    task_name="Music emotion recognition (4 Russell quadrants)",
                    dataset_type=args.dataset,
                    dataset_name=f"{dataset_name} ({args.config} split)",
                    dataset_split=split,
                    metric_type="accuracy" if metric == "accuracy" else "f1",
                    metric_name=f"{name} ({split})",
                    metric_value=round(metrics[split][metric], 4),
                    metric_config="macro" if metric == "macro_f1" else None,
                )
            )
    bases = base_models(args, config)
    card_data = ModelCardData(
        library_name="transformers",
        license=licence,
        pipeline_tag="other",
        tags=["music", "emotion-recognition", "music-emotion", "midi", "audio", "poolingvq", "custom_code"],
        metrics=["accuracy", "f1"],
        model_name=f"poolingvq-{args.dataset}",
        eval_results=results,
        **({"base_model": bases[0] if len(bases) == 1 else bases} if bases else {}),
        # the encoders are frozen inside this model, the rest trained on them: not a merge of the bases
        **({"base_model_relation": "finetune"} if bases else {}),
    )
    command = "poolingvq train " + " ".join(training_flags(args))
    test, val = metrics["test"], metrics["validation"]
    records = provenance.encoder_weights(config)
    encoder_lines = "; ".join(f"{name} - {provenance.describe(records[name])}" for name in ("audio", "midi"))
    if config.finetune_midi_encoder:
        encoder_lines += ", then fine-tuned here"
    reliance = test.get("modality_reliance")
    reliance_note = (
        "\nHow much the test predictions rest on each modality (the mean total-variation distance between a clip's "
        "predicted distribution and the one it gets with that input taken from another clip; 0 = ignored): "
        f"audio {reliance['audio']:.3f}, MIDI {reliance['midi']:.3f}.\n"
        if reliance
        else ""
    )
    statistics_note = (
        ", and the MIDI's performance statistics (velocity, notes per second in real time, pedal, mode, scale "
        "degrees: `midi_statistics`, which CP tokens lack) beside the fusion's vector"
        if config.reads_midi_statistics
        else ""
    )
    model_ref = args.push_to_hub or folder.name
    where = "" if args.push_to_hub else "  # this folder's path, or its Hub repo id once pushed"
    content = f"""---
{card_data.to_yaml()}
---

# PoolingVQ on {dataset_name}

A PoolingVQ music emotion model (audio + MIDI -> Russell quadrant Q1 happy, Q2 tense, Q3 sad, Q4 calm),
trained with the paper's recipe on [{dataset_name}]({homepage})'s `{args.config}` split
({metrics["train_clips"]} training clips).

| split | clips | accuracy | macro-F1 |
| --- | --- | --- | --- |
| validation (best epoch {metrics["best_epoch"]}) | {val["count"]} | {val["accuracy"]:.3f} | {val["macro_f1"]:.3f} |
| test (evaluated once) | {test["count"]} | {test["accuracy"]:.3f} | {test["macro_f1"]:.3f} |

Configuration: pooling `{config.pooling}`, modalities `{config.modalities}`, codebook size {config.codebook_size},
audio encoder {config.audio_encoder_description} (frozen), MIDI encoder {encoder_shape(config.midi_config)}
(initialised from `{args.model_init}`; {midi_encoder_training(args, config)}), fusion read-out
`{config.fusion_readout}`{statistics_note}.

Encoder weights: {encoder_lines}
{reliance_note}
## Use

With transformers alone (the model's code is in this repo):

```python
from transformers import pipeline

classify = pipeline("music-emotion", model="{model_ref}", trust_remote_code=True){where}
classify({{"audio": "song.wav", "midi": "song.mid"}})  # or classify("song.mid"): the audio is synthesized
```

or with the `poolingvq` package: `poolingvq predict --model {model_ref} song.mid`. transformers' own
`audio-classification` pipeline does not work: it cannot give the model the MIDI it reads.

## Training command

```bash
{command}
```

## Licence

`{licence}`: {LICENCE_NOTES[licence]}.

## Limits

- Audio {audio_source(args)}:
  real recordings sound different; expect a drop on them.
- {encoder_note(args, config)}; the metrics above hold only for this setting.
- {dataset_name}'s test split is small ({test["count"]} clips): a few clips move the accuracy by several points.
"""
    (folder / "README.md").write_text(content)


# ---------------------------------------------------------------------------------------------------------- CLI


def train_command(namespace: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per saved file otherwise
    args = dataclass_from_namespace(TrainingArguments, namespace)
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():  # log lines go above the progress bars, not into them
        metrics = train(args)
    test = metrics["test"]
    print(
        f"test accuracy {test['accuracy']:.3f}, macro-F1 {test['macro_f1']:.3f} (best epoch {metrics['best_epoch']})"
    )
    if "modality_reliance" in test:
        reliance = test["modality_reliance"]
        print(f"modality reliance (0 = ignored): audio {reliance['audio']:.3f}, MIDI {reliance['midi']:.3f}")
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    """`python -m poolingvq.train` / `accelerate launch -m poolingvq.train`: the flags of `poolingvq train`, and
    its one-line errors (no traceback) for what the user can fix."""
    parser = argparse.ArgumentParser(
        prog="poolingvq.training", description="train PoolingVQ (the paper's recipe)"
    )
    add_training_arguments(parser)
    try:
        return train_command(parser.parse_args(None if argv is None else list(argv)))
    except PoolingVQInputError as error:
        print(f"poolingvq train: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
