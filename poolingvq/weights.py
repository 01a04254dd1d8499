"""Import the official MERT-v1-95M and MIDI-BERT weights into a PoolingVQ model (`poolingvq import-weights`).

Not remote code: this runs once, on the machine that builds the model folder; the folder it writes needs none
of it.

MERT (m-a-p/MERT-v1-95M) is published as a `trust_remote_code` model (`model_type: "mert_model"`) whose code
subclasses transformers' HuBERT. Unless a variant switch is on (CQT input features, DeepNorm residuals, relaxed
attention), its computation *is* `HubertModel`'s, so its weights are loaded into a plain `HubertModel` and no
MERT code is ever run. The only renames: weights saved with the old `torch.nn.utils.weight_norm`
(`encoder.pos_conv_embed.conv.weight_g/_v`) become the parametrization that transformers 5 uses
(`...conv.parametrizations.weight.original0/1`), and any prefix in front of HuBERT's own names is stripped.

MIDI-BERT (wazenmai/MIDI-BERT) checkpoints are `torch.save`d dicts whose `state_dict` holds a transformers-4
`BertModel` under `bert.` plus the CP embeddings (`word_emb.*`, `in_linear.*`), or, after fine-tuning, all
that under `midibert.` next to a classification head. The mapping onto [`MidiBertModel`] is documented in
`midibert_poolingvq.py`: strip `bert.`, drop what MIDI-BERT never uses. A MIDI-BERT already converted (a folder
written by `MidiBertModel.save_pretrained`, e.g. shared on the Hub) is read as it is.

Both may be named by a Hugging Face Hub repo id as well as a local path (`hub.resolve_model_dir`): MERT is
`m-a-p/MERT-v1-95M`. The model written records where each encoder's weights came from (`provenance.py`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors.torch import load_file as load_safetensors
from transformers import HubertConfig, HubertModel, PreTrainedConfig

from . import provenance
from .configuration_poolingvq import MidiBertConfig, PoolingVQConfig
from .errors_poolingvq import PoolingVQInputError
from .hub import resolve_model_dir, source_record
from .midibert_poolingvq import CP_CLASSES, MidiBertModel

if TYPE_CHECKING:
    from .modeling_poolingvq import PoolingVQForMusicEmotion

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]

#: Weight files of a MERT folder, in order of preference (the same tensors when both are present).
MERT_WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
#: What of a MERT Hub repo is needed (not its remote code, which is never run).
MERT_CONFIG_FILES: tuple[str, ...] = ("config.json", "preprocessor_config.json")
#: Files of an official MIDI-BERT checkpoint (a `torch.save`d dict), as a Hub repo may hold one.
MIDIBERT_CHECKPOINT_PATTERNS: tuple[str, ...] = ("*.ckpt", "*.pth", "*.pt")

#: `HubertConfig`'s own fields (not those every transformers config has): what is carried over from MERT's.
HUBERT_FIELDS: frozenset[str] = frozenset(
    field.name for field in dataclasses.fields(HubertConfig)
) - frozenset(field.name for field in dataclasses.fields(PreTrainedConfig))

#: Old `weight_norm` names -> the `torch.nn.utils.parametrizations.weight_norm` names HubertModel now has.
WEIGHT_NORM_RENAMES: dict[str, str] = {
    ".weight_g": ".parametrizations.weight.original0",
    ".weight_v": ".parametrizations.weight.original1",
}


# ----------------------------------------------------------------------------------------------------- MERT


def _refuse_mert_variants(mert_config: Mapping[str, Any], source: object) -> None:
    """Raise on every switch of MERT's code that takes it off `HubertModel`'s computation."""
    model_type = mert_config.get("model_type", "mert_model")
    if model_type not in ("mert_model", "hubert"):
        raise PoolingVQInputError(
            source, f"model_type={model_type!r} is neither MERT ('mert_model') nor HuBERT"
        )
    if mert_config.get("feature_extractor_cqt", False):
        raise PoolingVQInputError(
            source,
            "feature_extractor_cqt=true: this MERT variant concatenates nnAudio CQT features to the conv "
            "features, which HubertModel cannot compute; use MERT-v1-95M (feature_extractor_cqt=false)",
        )
    if mert_config.get("deepnorm", False):
        raise PoolingVQInputError(
            source,
            "deepnorm=true: this MERT variant up-weights its residual connections (DeepNorm), "
            "which HubertModel cannot compute",
        )
    attention_relax = mert_config.get("attention_relax", -1.0)
    if attention_relax is not None and attention_relax > 0:
        raise PoolingVQInputError(
            source,
            f"attention_relax={attention_relax}: this MERT variant relaxes its attention softmax, "
            "which HubertModel cannot compute",
        )


def mert_config_to_hubert(
    mert_config: Mapping[str, Any], source: object = "MERT config.json"
) -> HubertConfig:
    """An official MERT `config.json` (as a dict) -> the `HubertConfig` that computes the same thing.

    Refuses (`PoolingVQInputError`, a `ValueError` naming the field) the MERT variants HubertModel cannot run.
    MERT's `sample_rate` becomes `sampling_rate`. Spec-augment and layer-drop are switched off: PoolingVQ
    only runs the encoder frozen, for inference (the masking probabilities are kept, so that the
    `masked_spec_embed` parameter exists exactly when MERT's checkpoint has it).
    """
    _refuse_mert_variants(mert_config, source)
    sampling_rate = mert_config.get("sample_rate", mert_config.get("sampling_rate"))
    if sampling_rate is None:
        raise PoolingVQInputError(source, "no sample_rate: cannot tell which sampling rate MERT expects")
    fields = {name: value for name, value in mert_config.items() if name in HUBERT_FIELDS}
    fields.update(apply_spec_augment=False, layerdrop=0.0, sampling_rate=int(sampling_rate))
    try:
        return HubertConfig(**fields)
    except (TypeError, ValueError, StrictDataclassError) as error:  # e.g. conv lists of unequal lengths
        raise PoolingVQInputError(source, f"not a valid HuBERT configuration: {error}") from error


def fetch_mert(name_or_path: str | Path, revision: str | None = None) -> Path:
    """A MERT folder: a local one as it is, or Hub repo `name_or_path` (e.g. `m-a-p/MERT-v1-95M`) from the cache.

    Only the configs and one weight file are downloaded: `model.safetensors` when the repo has it, else
    `pytorch_model.bin` (the same tensors; fetching both would double a 380 MB download).
    """
    folder = resolve_model_dir(
        name_or_path, revision, allow_patterns=[*MERT_CONFIG_FILES, MERT_WEIGHT_FILES[0]], flag="--mert"
    )
    if not any((folder / name).is_file() for name in MERT_WEIGHT_FILES):
        folder = resolve_model_dir(
            name_or_path, revision, allow_patterns=MERT_WEIGHT_FILES[1:], flag="--mert"
        )
    return folder


def read_mert_config(folder: str | Path) -> HubertConfig:
    """`folder/config.json` -> `HubertConfig` (see [`mert_config_to_hubert`]); the sampling rate is taken from
    `preprocessor_config.json` when config.json does not say it."""
    folder = Path(folder)
    config_path = folder / "config.json"
    mert_config = _read_json(config_path)
    if "sample_rate" not in mert_config and "sampling_rate" not in mert_config:
        preprocessor_path = folder / "preprocessor_config.json"
        if preprocessor_path.is_file():
            mert_config["sample_rate"] = _read_json(preprocessor_path).get("sampling_rate")
    return mert_config_to_hubert(mert_config, config_path)


def load_mert_state_dict(folder: str | Path) -> StateDict:
    """An official MERT folder -> a state dict that `HubertModel(read_mert_config(folder))` loads strictly.

    Reads `model.safetensors`, else `pytorch_model.bin` (`torch.load(weights_only=True)`), renames the old
    weight-norm keys, strips any prefix in front of HuBERT's names and drops what HubertModel does not have
    (e.g. pre-training heads). Raises `PoolingVQInputError` when encoder weights are missing or mis-shaped.
    """
    folder = Path(folder)
    weight_path = next((folder / name for name in MERT_WEIGHT_FILES if (folder / name).is_file()), None)
    if weight_path is None:
        raise PoolingVQInputError(folder, f"no MERT weights: expected one of {', '.join(MERT_WEIGHT_FILES)}")
    raw = _read_tensor_file(weight_path)
    with torch.device("meta"):  # the expected names and shapes, without allocating 95M parameters
        expected = HubertModel(read_mert_config(folder)).state_dict()

    state: StateDict = {}
    ignored: list[str] = []
    for key, tensor in raw.items():
        name = _expected_suffix(_rename_weight_norm(key), expected)
        if name is None:
            ignored.append(key)
        elif name in state:
            raise PoolingVQInputError(weight_path, f"two tensors for {name}, one of them {key}")
        else:
            state[name] = tensor
    _check_complete(state, expected, weight_path, "MERT encoder")
    if ignored:
        logger.info("MERT: ignored %d tensors HubertModel does not use: %s", len(ignored), ", ".join(ignored))
    return state


def _rename_weight_norm(key: str) -> str:
    for old, new in WEIGHT_NORM_RENAMES.items():
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


def _expected_suffix(key: str, expected: Mapping[str, Any]) -> str | None:
    """`key` itself, or what is left of it after dropping leading dotted parts (a prefix such as
    `mert_model.` or `module.`), if that is an expected name; else None."""
    parts = key.split(".")
    for start in range(len(parts)):
        candidate = ".".join(parts[start:])
        if candidate in expected:
            return candidate
    return None


# ------------------------------------------------------------------------------------------------ MIDI-BERT

#: Official MIDI-BERT name prefix -> [`MidiBertModel`] name prefix; anything else is not part of the encoder.
MIDIBERT_RENAMES: dict[str, str] = {
    "word_emb.": "word_emb.",
    "in_linear.": "in_linear.",
    "bert.embeddings.token_type_embeddings.": "embeddings.token_type_embeddings.",
    "bert.embeddings.LayerNorm.": "embeddings.LayerNorm.",
    "bert.encoder.": "encoder.",
}
#: Wrappers around the encoder in saved checkpoints: `nn.DataParallel`, and the fine-tuning model
#: (`SequenceClassification.midibert`, whose other children are the classification head).
MIDIBERT_WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "midibert.")


def load_midibert_state_dict(ckpt_path: str | Path) -> StateDict:
    """An official MIDI-BERT checkpoint -> a state dict in [`MidiBertModel`]'s names.

    The file is a `torch.save`d dict holding `state_dict` (or is the state dict itself), from pre-training
    (`bert.*`, `word_emb.*`, `in_linear.*`) or fine-tuning (the same under `midibert.`, plus a head). BERT's
    word and absolute-position tables, its pooler and any head are dropped: MIDI-BERT never uses them.
    Raises `PoolingVQInputError` when encoder weights are missing. The config is in the shapes:
    [`midibert_config_from_state_dict`].
    """
    checkpoint = _read_tensor_file(ckpt_path)
    raw = checkpoint.get("state_dict", checkpoint)
    if not isinstance(raw, Mapping):
        raise PoolingVQInputError(ckpt_path, "its 'state_dict' is not a dict of tensors")
    raw = _unwrap(raw)

    state: StateDict = {}
    ignored: list[str] = []
    for key, tensor in raw.items():
        old_prefix = next((prefix for prefix in MIDIBERT_RENAMES if key.startswith(prefix)), None)
        if old_prefix is None or not isinstance(tensor, torch.Tensor):
            ignored.append(key)
        else:
            state[MIDIBERT_RENAMES[old_prefix] + key[len(old_prefix) :]] = tensor
    config = midibert_config_from_state_dict(state, ckpt_path)
    with torch.device("meta"):
        expected = MidiBertModel(config).state_dict()
    _check_complete(state, expected, ckpt_path, "MIDI-BERT encoder")
    if ignored:
        logger.info(
            "MIDI-BERT: ignored %d tensors the encoder does not use: %s", len(ignored), ", ".join(ignored)
        )
    return state


def _unwrap(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """Peel `module.` / `midibert.` off the keys, keeping only what was under them (the rest is a head)."""
    for prefix in MIDIBERT_WRAPPER_PREFIXES:
        if any(key.startswith(prefix) for key in raw):
            raw = {key[len(prefix) :]: value for key, value in raw.items() if key.startswith(prefix)}
    return raw


def midibert_config_from_state_dict(
    state: Mapping[str, torch.Tensor], source: object = "state dict"
) -> MidiBertConfig:
    """The [`MidiBertConfig`] a state dict in [`MidiBertModel`]'s names was trained with, read from its shapes.

    `cp_pad_token` is each class's vocabulary size minus 2: MIDI-BERT's dictionary ends every class with
    `<PAD>` then `<MASK>`. What the shapes cannot tell (activation, LayerNorm eps, dropouts) keeps BERT's
    defaults, which MIDI-BERT used.
    """
    cp_names = [f"word_emb.{i}.lut.weight" for i in range(len(CP_CLASSES))]
    distance_name = "encoder.layer.0.attention.self.distance_embedding.weight"
    intermediate_name = "encoder.layer.0.intermediate.dense.weight"
    token_type_name = "embeddings.token_type_embeddings.weight"
    required = [*cp_names, "in_linear.weight", token_type_name, distance_name, intermediate_name]
    missing = [name for name in required if name not in state]
    if missing:
        raise PoolingVQInputError(
            source, f"not a MIDI-BERT checkpoint: no encoder weights ({', '.join(missing)})"
        )

    cp_tables = [state[name] for name in cp_names]
    cp_widths = {table.shape[1] for table in cp_tables}
    if len(cp_widths) != 1:
        raise PoolingVQInputError(source, f"CP embeddings of different widths {sorted(cp_widths)}")
    cp_embedding_size = cp_widths.pop()
    hidden_size, in_width = state["in_linear.weight"].shape
    if in_width != len(CP_CLASSES) * cp_embedding_size:
        raise PoolingVQInputError(source, f"in_linear takes {in_width} features, not 4 x {cp_embedding_size}")
    distances, head_dim = state[distance_name].shape
    if hidden_size % head_dim or distances % 2 == 0:
        raise PoolingVQInputError(source, f"distance_embedding of shape {(distances, head_dim)} fits no BERT")
    layer_indices = {int(match[1]) for key in state if (match := re.match(r"encoder\.layer\.(\d+)\.", key))}
    if layer_indices != set(range(len(layer_indices))):
        raise PoolingVQInputError(source, f"encoder layers {sorted(layer_indices)} are not numbered 0..N-1")

    vocab_sizes = [table.shape[0] for table in cp_tables]
    return MidiBertConfig(
        cp_vocab_sizes=vocab_sizes,
        cp_pad_token=[size - 2 for size in vocab_sizes],
        cp_embedding_size=cp_embedding_size,
        hidden_size=hidden_size,
        num_hidden_layers=len(layer_indices),
        num_attention_heads=hidden_size // head_dim,
        intermediate_size=state[intermediate_name].shape[0],
        max_position_embeddings=(distances + 1) // 2,
        type_vocab_size=state[token_type_name].shape[0],
    )


def load_midibert(
    name_or_path: str | Path, revision: str | None = None, flag: str = "--midibert"
) -> tuple[StateDict, MidiBertConfig, Path]:
    """MIDI-BERT's encoder weights and config from any of: an official checkpoint file; a folder written by
    `MidiBertModel.save_pretrained` (a converted encoder, or one from `poolingvq pretrain-midi`); a Hub repo id
    holding either. Returns the state dict, the config and the file or folder read. `flag` names the input in
    error messages.

    A folder must hold every encoder weight: transformers would silently initialise missing ones at random,
    which is exactly what importing weights is meant to rule out.
    """
    path = resolve_model_dir(name_or_path, revision, flag=flag)
    if path.is_file():
        state = load_midibert_state_dict(path)
        return state, midibert_config_from_state_dict(state, path), path
    if (path / "config.json").is_file():
        return (*_load_midibert_folder(path), path)
    checkpoints = sorted(p for pattern in MIDIBERT_CHECKPOINT_PATTERNS for p in path.glob(pattern))
    if len(checkpoints) != 1:
        raise PoolingVQInputError(
            path,
            "neither a MidiBertModel folder (config.json + weights) nor a folder holding one MIDI-BERT "
            f"checkpoint ({', '.join(MIDIBERT_CHECKPOINT_PATTERNS)}): found {len(checkpoints)}",
        )
    state = load_midibert_state_dict(checkpoints[0])
    return state, midibert_config_from_state_dict(state, checkpoints[0]), checkpoints[0]


def _load_midibert_folder(folder: Path) -> tuple[StateDict, MidiBertConfig]:
    try:
        model, info = MidiBertModel.from_pretrained(folder, output_loading_info=True)
    except (OSError, ValueError, TypeError) as error:  # a foreign config.json, unreadable weights...
        raise PoolingVQInputError(folder, f"not a MidiBertModel folder: {_first_line(error)}") from error
    missing = sorted(info.get("missing_keys") or ()) + sorted(
        str(key) for key in info.get("mismatched_keys") or ()
    )
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise PoolingVQInputError(folder, f"MIDI-BERT encoder weights missing or mis-shaped: {shown}")
    return model.state_dict(), model.config


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ---------------------------------------------------------------------------------------------- both, CLI


def import_official_weights(
    mert: str | Path,
    midibert: str | Path,
    *,
    mert_revision: str | None = None,
    midibert_revision: str | None = None,
    **config_overrides: Any,
) -> PoolingVQForMusicEmotion:
    """A full PoolingVQ model (the `"paper"` preset, `config_overrides` on top) whose two frozen encoders hold
    the official MERT and MIDI-BERT weights; the trained parts (quantizer, fusion, head) are freshly initialised.

    `mert`: a MERT folder or Hub repo id ([`fetch_mert`]); `midibert`: a checkpoint, a `MidiBertModel` folder
    or a Hub repo id ([`load_midibert`]). The revisions pin Hub snapshots. `config.encoder_weights` records
    where each encoder came from (the repo id and commit, or the absolute path).
    """
    from .modeling_poolingvq import PoolingVQForMusicEmotion  # the model, only when a model is built

    mert_dir = fetch_mert(mert, mert_revision)
    audio_config = read_mert_config(mert_dir)
    audio_state = load_mert_state_dict(mert_dir)
    midi_state, midi_config, midi_path = load_midibert(midibert, midibert_revision)
    config = PoolingVQConfig.from_preset(
        "paper", audio_config=audio_config, midi_config=midi_config, **config_overrides
    )
    provenance.set_encoder_weights(
        config,
        audio=provenance.pretrained("MERT", "import-weights", **source_record(mert, mert_dir)),
        midi=provenance.pretrained("MIDI-BERT", "import-weights", **source_record(midibert, midi_path)),
    )
    model = PoolingVQForMusicEmotion(config)
    model.audio_encoder.load_state_dict(audio_state, strict=True)
    model.midi_encoder.load_state_dict(midi_state, strict=True)
    return model


def import_weights_command(args: argparse.Namespace) -> int:
    """`poolingvq import-weights --mert DIR|REPO --midibert CKPT|DIR|REPO --out DIR`."""
    logging.basicConfig(level=logging.INFO, format="poolingvq import-weights: %(message)s")
    from .processing_poolingvq import PoolingVQProcessor

    model = import_official_weights(
        args.mert,
        args.midibert,
        mert_revision=getattr(args, "mert_revision", None),
        midibert_revision=getattr(args, "midibert_revision", None),
    )
    model.save_pretrained(args.out)
    # MIDI-BERT's weights saw the "midibert" token grid: the processor saved beside them keeps to it
    PoolingVQProcessor.for_model(model.config, midi_mode="midibert").save_pretrained(args.out)
    records = provenance.encoder_weights(model.config)
    for name, encoder, record in (
        ("MERT", model.audio_encoder, records["audio"]),
        ("MIDI-BERT", model.midi_encoder, records["midi"]),
    ):
        config = encoder.config
        revision = f" (revision {record['revision']})" if record.get("revision") else ""
        print(
            f"{name}: {len(encoder.state_dict())} tensors, {sum(p.numel() for p in encoder.parameters()):,} "
            f"parameters ({config.num_hidden_layers} layers x {config.hidden_size}) from {record['source']}{revision}"
        )
    print(
        f"saved PoolingVQ model and processor to {args.out} (the head and codebook are untrained: run `poolingvq train`)"
    )
    return 0


# ---------------------------------------------------------------------------------------------- file helpers


def _read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PoolingVQInputError(path, f"cannot read JSON: {error}") from error
    if not isinstance(content, dict):
        raise PoolingVQInputError(path, "is not a JSON object")
    return content


def _read_tensor_file(path: str | Path) -> dict[str, Any]:
    """A safetensors file, or a torch file read with `weights_only=True` (no code from the file is run)."""
    path = Path(path)
    if not path.is_file():
        raise PoolingVQInputError(path, "no such file")
    try:
        if path.suffix == ".safetensors":
            content = load_safetensors(path)
        else:
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise many types for a corrupt or foreign file
        raise PoolingVQInputError(path, f"cannot read weights: {type(error).__name__}: {error}") from error
    if not isinstance(content, dict):
        raise PoolingVQInputError(path, f"holds a {type(content).__name__}, not a dict of tensors")
    return content


def _check_complete(
    state: StateDict, expected: Mapping[str, torch.Tensor], source: object, what: str
) -> None:
    """Raise unless `state` has every expected name, each with the expected shape."""
    missing = sorted(set(expected) - set(state))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise PoolingVQInputError(source, f"{what} weights missing: {shown}")
    mis_shaped = [
        f"{name} {tuple(state[name].shape)} != {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if state[name].shape != tensor.shape
    ]
    if mis_shaped:
        raise PoolingVQInputError(source, f"{what} weights of the wrong shape: {'; '.join(mis_shaped[:5])}")


__all__ = [
    "fetch_mert",
    "import_official_weights",
    "import_weights_command",
    "load_mert_state_dict",
    "load_midibert",
    "load_midibert_state_dict",
    "mert_config_to_hubert",
    "midibert_config_from_state_dict",
    "read_mert_config",
]
