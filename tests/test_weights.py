"""Import of the official MERT and MIDI-BERT weights.

The tests write the official layouts themselves (no download): a MERT folder (MERT's config.json schema,
weights with the old weight-norm names, as pytorch_model.bin or model.safetensors) saved from a transformers
HubertModel, and MIDI-BERT checkpoints (pre-training and fine-tuning layouts, `torch.save`d) whose BERT part
comes from a transformers BertModel plus the relative-distance tables. The imported encoders must compute what
the references compute: HubertModel itself for MERT, and for MIDI-BERT a functional forward written here from
the formulas, reading the official tensors by their official names.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import BertConfig, BertModel, HubertConfig, HubertModel

from poolingvq.configuration_poolingvq import MERT_V1_95M_AUDIO_CONFIG, TINY_AUDIO_CONFIG
from poolingvq.errors_poolingvq import PoolingVQInputError
from poolingvq.midibert_poolingvq import MidiBertModel
from poolingvq.weights import (
    load_mert_state_dict,
    load_midibert_state_dict,
    mert_config_to_hubert,
    midibert_config_from_state_dict,
    read_mert_config,
)

SAMPLING_RATE = 24000
ATOL = 1e-5

# ------------------------------------------------------------------------------------------------------ MERT

#: m-a-p/MERT-v1-95M's config.json, field for field (the architecture fields are filled in per test).
MERT_V1_95M_CONFIG_JSON = {
    "_name_or_path": "m-a-p/MERT-v1-95M",
    "activation_dropout": 0.0,
    "apply_spec_augment": True,
    "architectures": ["MERTModel"],
    "attention_dropout": 0.1,
    "attention_relax": -1.0,
    "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"},
    "bos_token_id": 1,
    "classifier_proj_size": 256,
    "conv_bias": False,
    "ctc_loss_reduction": "sum",
    "ctc_zero_infinity": False,
    "deepnorm": False,
    "do_stable_layer_norm": False,
    "eos_token_id": 2,
    "feat_extract_activation": "gelu",
    "feat_extract_dropout": 0.0,
    "feat_extract_norm": "group",
    "feat_proj_dropout": 0.1,
    "feat_proj_layer_norm": True,
    "feature_extractor_cqt": False,
    "feature_extractor_cqt_bins": 336,
    "final_dropout": 0.1,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout": 0.1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-05,
    "layerdrop": 0.1,
    "mask_feature_length": 10,
    "mask_feature_min_masks": 0,
    "mask_feature_prob": 0.0,
    "mask_time_length": 10,
    "mask_time_min_masks": 2,
    "mask_time_prob": 0.05,
    "model_type": "mert_model",
    "num_feat_extract_layers": 7,
    "pad_token_id": 0,
    "sample_rate": SAMPLING_RATE,
    "torch_dtype": "float32",
    "transformers_version": "4.25.1",
    "use_weighted_layer_sum": False,
    "vocab_size": 32,
}
ARCHITECTURE_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "conv_dim",
    "conv_kernel",
    "conv_stride",
    "num_conv_pos_embeddings",
    "num_conv_pos_embedding_groups",
)


def mert_config_json(architecture: dict, **changes) -> dict:
    """MERT's config.json with the dimensions of `architecture` (one of the audio presets)."""
    return {
        **MERT_V1_95M_CONFIG_JSON,
        **{name: architecture[name] for name in ARCHITECTURE_FIELDS},
        **changes,
    }


def perturb_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Add noise to every parameter, so that no norm sits at identity and no two tensors are alike."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return module.eval()


def reference_hubert(architecture: dict, seed: int) -> HubertModel:
    """The model the MERT folder is saved from, configured directly (not through the import code)."""
    config = HubertConfig(**{name: architecture[name] for name in ARCHITECTURE_FIELDS})
    return perturb_(HubertModel(config), seed)


def old_weight_norm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5 names -> the `weight_g` / `weight_v` names MERT's checkpoint was saved with."""
    renames = {
        "parametrizations.weight.original0": "weight_g",
        "parametrizations.weight.original1": "weight_v",
    }
    renamed = {}
    for key, tensor in state.items():
        for new, old in renames.items():
            key = key.replace(new, old)
        renamed[key] = tensor.clone().contiguous()
    return renamed


def write_mert_folder(
    folder: Path, config_json: dict, state: dict[str, torch.Tensor], weight_file: str
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config_json, indent=2))
    if weight_file == "model.safetensors":
        save_file(state, folder / weight_file)
    else:
        torch.save(state, folder / weight_file)
    return folder


def imported_hubert(folder: Path) -> HubertModel:
    model = HubertModel(read_mert_config(folder))
    model.load_state_dict(load_mert_state_dict(folder), strict=True)
    return model.eval()


def assert_same_audio_outputs(imported: HubertModel, reference: HubertModel, seconds: float = 1.0) -> None:
    audio = torch.randn(1, int(seconds * SAMPLING_RATE), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        got = imported(audio, output_hidden_states=True)
        want = reference(audio, output_hidden_states=True)
    assert got.last_hidden_state.shape[1] == int(seconds * 75) - 1  # 75 frames/s, minus the conv edges
    for got_state, want_state in zip(got.hidden_states, want.hidden_states, strict=True):
        torch.testing.assert_close(got_state, want_state, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("weight_file", ["pytorch_model.bin", "model.safetensors"])
def test_tiny_mert_folder_imports_exactly(tmp_path: Path, weight_file: str) -> None:
    reference = reference_hubert(TINY_AUDIO_CONFIG, seed=0)
    state = old_weight_norm_names(reference.state_dict())
    assert any(key.endswith("pos_conv_embed.conv.weight_g") for key in state)
    folder = write_mert_folder(tmp_path / "mert", mert_config_json(TINY_AUDIO_CONFIG), state, weight_file)
    assert_same_audio_outputs(imported_hubert(folder), reference)


def test_mert_config_becomes_an_inference_hubert_config() -> None:
    config = mert_config_to_hubert(mert_config_json(MERT_V1_95M_AUDIO_CONFIG))
    for name in ARCHITECTURE_FIELDS + (
        "conv_bias",
        "feat_extract_norm",
        "layer_norm_eps",
        "do_stable_layer_norm",
    ):
        assert getattr(config, name) == MERT_V1_95M_AUDIO_CONFIG[name], name
    assert config.sampling_rate == SAMPLING_RATE
    assert not config.apply_spec_augment and config.layerdrop == 0.0
    assert not hasattr(config, "feature_extractor_cqt")


def test_mert_sampling_rate_comes_from_the_preprocessor_when_config_lacks_it(tmp_path: Path) -> None:
    config_json = mert_config_json(TINY_AUDIO_CONFIG)
    del config_json["sample_rate"]
    (tmp_path / "config.json").write_text(json.dumps(config_json))
    with pytest.raises(PoolingVQInputError, match="no sample_rate"):
        read_mert_config(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"sampling_rate": 22050}))
    assert read_mert_config(tmp_path).sampling_rate == 22050


def test_mert_config_that_is_no_hubert_is_refused() -> None:
    with pytest.raises(PoolingVQInputError, match="not a valid HuBERT configuration"):
        mert_config_to_hubert(mert_config_json(TINY_AUDIO_CONFIG, conv_stride=[5, 2]))


def test_mert_prefix_and_heads_are_handled(tmp_path: Path) -> None:
    reference = reference_hubert(TINY_AUDIO_CONFIG, seed=1)
    state = {
        f"mert_model.{key}": tensor for key, tensor in old_weight_norm_names(reference.state_dict()).items()
    }
    state["label_embs_concat"] = torch.randn(3, 8)  # a pre-training head HubertModel does not have
    folder = write_mert_folder(
        tmp_path / "mert", mert_config_json(TINY_AUDIO_CONFIG), state, "pytorch_model.bin"
    )
    loaded = load_mert_state_dict(folder)
    assert "label_embs_concat" not in loaded
    assert set(loaded) == set(reference.state_dict())
    assert_same_audio_outputs(imported_hubert(folder), reference)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"feature_extractor_cqt": True}, "feature_extractor_cqt"),
        ({"deepnorm": True}, "deepnorm"),
        ({"attention_relax": 32.0}, "attention_relax"),
        ({"model_type": "wav2vec2"}, "model_type"),
    ],
)
def test_mert_variants_hubert_cannot_run_are_refused(change: dict, field: str) -> None:
    with pytest.raises(PoolingVQInputError, match=field):
        mert_config_to_hubert(mert_config_json(TINY_AUDIO_CONFIG, **change))


def test_mert_missing_encoder_weights_are_refused(tmp_path: Path) -> None:
    state = old_weight_norm_names(reference_hubert(TINY_AUDIO_CONFIG, seed=2).state_dict())
    del state["encoder.layers.1.attention.k_proj.weight"]
    folder = write_mert_folder(
        tmp_path / "mert", mert_config_json(TINY_AUDIO_CONFIG), state, "model.safetensors"
    )
    with pytest.raises(PoolingVQInputError, match=r"missing: encoder\.layers\.1\.attention\.k_proj\.weight"):
        load_mert_state_dict(folder)


def test_mert_weights_of_another_size_are_refused(tmp_path: Path) -> None:
    state = old_weight_norm_names(reference_hubert(TINY_AUDIO_CONFIG, seed=3).state_dict())
    config_json = mert_config_json(TINY_AUDIO_CONFIG, intermediate_size=128)  # the weights have 64
    folder = write_mert_folder(tmp_path / "mert", config_json, state, "pytorch_model.bin")
    with pytest.raises(PoolingVQInputError, match="wrong shape"):
        load_mert_state_dict(folder)


def test_mert_folder_without_weights_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "mert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(mert_config_json(TINY_AUDIO_CONFIG)))
    with pytest.raises(PoolingVQInputError, match="no MERT weights"):
        load_mert_state_dict(folder)
    (folder / "pytorch_model.bin").write_bytes(b"not a torch file")
    with pytest.raises(PoolingVQInputError, match="cannot read weights"):
        load_mert_state_dict(folder)


@pytest.mark.slow
def test_full_size_mert_folder_imports_exactly(tmp_path: Path) -> None:
    reference = reference_hubert(MERT_V1_95M_AUDIO_CONFIG, seed=4)
    state = old_weight_norm_names(reference.state_dict())
    folder = write_mert_folder(
        tmp_path / "mert", mert_config_json(MERT_V1_95M_AUDIO_CONFIG), state, "model.safetensors"
    )
    del state
    assert_same_audio_outputs(imported_hubert(folder), reference)


# ------------------------------------------------------------------------------------------------- MIDI-BERT

#: MIDI-BERT's CP vocabulary sizes (Bar, Position, Pitch, Duration; each ends with <PAD>, <MASK>).
CP_VOCAB_SIZES = (4, 18, 88, 66)
CP_PAD = (2, 16, 86, 64)
MAX_POSITIONS = 512
TINY_MIDIBERT = {"emb": 16, "hidden": 32, "layers": 2, "heads": 2, "intermediate": 64, "bert_vocab": 100}
FULL_MIDIBERT = {
    "emb": 256,
    "hidden": 768,
    "layers": 12,
    "heads": 12,
    "intermediate": 3072,
    "bert_vocab": 30522,
}


def official_midibert_state(size: dict, seed: int) -> dict[str, torch.Tensor]:
    """The pre-training checkpoint's `state_dict`: a transformers BertModel under `bert.` (its unused word and
    position tables and pooler included, as the official file has them), a relative-distance table per layer,
    and the CP embeddings and projection. All values random."""
    torch.manual_seed(seed)
    bert = BertModel(
        BertConfig(
            vocab_size=size["bert_vocab"],
            hidden_size=size["hidden"],
            num_hidden_layers=size["layers"],
            num_attention_heads=size["heads"],
            intermediate_size=size["intermediate"],
            max_position_embeddings=MAX_POSITIONS,
        )
    )
    state = {f"bert.{key}": tensor for key, tensor in perturb_(bert, seed).state_dict().items()}
    head_dim = size["hidden"] // size["heads"]
    for layer in range(size["layers"]):
        state[f"bert.encoder.layer.{layer}.attention.self.distance_embedding.weight"] = torch.randn(
            2 * MAX_POSITIONS - 1, head_dim
        )
    for i, vocab_size in enumerate(CP_VOCAB_SIZES):
        state[f"word_emb.{i}.lut.weight"] = torch.randn(vocab_size, size["emb"])
    state["in_linear.weight"] = torch.randn(size["hidden"], 4 * size["emb"]) / math.sqrt(4 * size["emb"])
    state["in_linear.bias"] = torch.randn(size["hidden"]) * 0.1
    return state


def finetuned_checkpoint(state: dict[str, torch.Tensor], hidden: int) -> dict:
    """MIDI-BERT's emotion fine-tuning file: the encoder under `midibert.`, its self-attentive head, training
    bookkeeping and an optimizer state (plain Python values that `weights_only=True` must accept)."""
    head = {
        "attention.ws1.weight": torch.randn(128, hidden),
        "attention.ws2.weight": torch.randn(4, 128),
        "classifier.0.weight": torch.randn(256, 4 * hidden),
        "classifier.0.bias": torch.randn(256),
        "classifier.2.weight": torch.randn(4, 256),
        "classifier.2.bias": torch.randn(4),
    }
    optimizer = {
        "state": {},
        "param_groups": [{"lr": 2e-5, "betas": (0.9, 0.999), "correct_bias": True, "params": [0]}],
    }
    return {
        "epoch": 3,
        "state_dict": {**{f"midibert.{key}": tensor for key, tensor in state.items()}, **head},
        "valid_acc": 0.61,
        "optimizer": optimizer,
    }


def reference_midibert_forward(
    state: dict[str, torch.Tensor], tokens: torch.Tensor, heads: int
) -> torch.Tensor:
    """MIDI-BERT's forward from the formulas, on the official tensors by their official names: [B, L, hidden].

    CP embeddings * sqrt(E), concatenated, projected; + token type 0; LayerNorm; then per layer
    softmax((q.k + q.D[l-r+511] + k.D[l-r+511]) / sqrt(d) + mask) v with an explicit [L, L, d] tensor D,
    output projection + residual + LayerNorm, GELU feed-forward + residual + LayerNorm (BERT's eps 1e-12).
    """

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, state[f"{name}.weight"], state[f"{name}.bias"])

    def layer_norm(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], state[f"{name}.weight"], state[f"{name}.bias"], eps=1e-12)

    width = state["word_emb.0.lut.weight"].shape[1]
    embedded = [
        F.embedding(tokens[..., i], state[f"word_emb.{i}.lut.weight"]) * math.sqrt(width) for i in range(4)
    ]
    x = (
        linear(torch.cat(embedded, dim=-1), "in_linear")
        + state["bert.embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, "bert.embeddings.LayerNorm")

    batch, length, hidden = x.shape
    head_dim = hidden // heads
    distance = torch.arange(length)[:, None] - torch.arange(length)[None, :]
    key_is_padding = tokens[..., 0] == CP_PAD[0]
    n_layers = len({key.split(".")[3] for key in state if key.startswith("bert.encoder.layer.")})
    for n in range(n_layers):
        p = f"bert.encoder.layer.{n}."
        q, k, v = (
            linear(x, p + f"attention.self.{name}").view(batch, length, heads, head_dim).transpose(1, 2)
            for name in ("query", "key", "value")
        )
        table = state[p + "attention.self.distance_embedding.weight"][
            distance + MAX_POSITIONS - 1
        ]  # [L, L, d]
        scores = (
            torch.einsum("bhld,bhrd->bhlr", q, k)
            + torch.einsum("bhld,lrd->bhlr", q, table)
            + torch.einsum("bhrd,lrd->bhlr", k, table)
        ) / math.sqrt(head_dim)
        scores = scores.masked_fill(key_is_padding[:, None, None, :], torch.finfo(scores.dtype).min)
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, hidden)
        x = layer_norm(linear(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        feed_forward = linear(F.gelu(linear(x, p + "intermediate.dense")), p + "output.dense")
        x = layer_norm(feed_forward + x, p + "output.LayerNorm")
    return x


def padded_cp_tokens(batch: int, length: int, real_lengths: list[int], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    columns = [torch.randint(0, size - 2, (batch, length), generator=generator) for size in CP_VOCAB_SIZES]
    tokens = torch.stack(columns, dim=-1)
    for row, real in enumerate(real_lengths):
        tokens[row, real:] = torch.tensor(CP_PAD)
    return tokens


def imported_midibert(ckpt: Path) -> MidiBertModel:
    state = load_midibert_state_dict(ckpt)
    model = MidiBertModel(midibert_config_from_state_dict(state))
    model.load_state_dict(state, strict=True)
    return model.eval()


def assert_matches_reference(ckpt: Path, official: dict, size: dict, length: int) -> None:
    model = imported_midibert(ckpt)
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (
        size["layers"],
        size["hidden"],
        size["heads"],
    )
    assert (config.intermediate_size, config.cp_embedding_size, config.max_position_embeddings) == (
        size["intermediate"],
        size["emb"],
        MAX_POSITIONS,
    )
    assert list(config.cp_vocab_sizes) == list(CP_VOCAB_SIZES) and list(config.cp_pad_token) == list(CP_PAD)
    tokens = padded_cp_tokens(2, length, [length, length * 2 // 3], seed=8)
    with torch.no_grad():
        got = model(tokens).last_hidden_state
        want = reference_midibert_forward(official, tokens, size["heads"])
    real = tokens[..., 0] != CP_PAD[0]  # padding rows' outputs are not used by anyone
    torch.testing.assert_close(got[real], want[real], atol=ATOL, rtol=ATOL)


def test_tiny_pretraining_checkpoint_imports_exactly(tmp_path: Path) -> None:
    official = official_midibert_state(TINY_MIDIBERT, seed=10)
    official["bert.embeddings.position_ids"] = torch.arange(MAX_POSITIONS)[
        None
    ]  # older transformers saved it
    ckpt = tmp_path / "pretrain_model.ckpt"
    torch.save({"epoch": 10, "state_dict": official, "best_acc": [0.9, 0.8, 0.7, 0.6]}, ckpt)
    assert_matches_reference(ckpt, official, TINY_MIDIBERT, length=40)
    loaded = load_midibert_state_dict(ckpt)
    assert not any("word_embeddings" in key or "position" in key or "pooler" in key for key in loaded)


def test_tiny_finetuned_checkpoint_imports_exactly(tmp_path: Path) -> None:
    official = official_midibert_state(TINY_MIDIBERT, seed=11)
    ckpt = tmp_path / "emotion_model_best.ckpt"
    torch.save(finetuned_checkpoint(official, TINY_MIDIBERT["hidden"]), ckpt)
    assert_matches_reference(ckpt, official, TINY_MIDIBERT, length=40)
    assert not any(key.startswith(("attention.", "classifier.")) for key in load_midibert_state_dict(ckpt))


def test_bare_and_data_parallel_state_dicts_import(tmp_path: Path) -> None:
    official = official_midibert_state(TINY_MIDIBERT, seed=12)
    bare = tmp_path / "bare.pth"
    torch.save(official, bare)
    wrapped = tmp_path / "wrapped.ckpt"
    torch.save({"state_dict": {f"module.{key}": tensor for key, tensor in official.items()}}, wrapped)
    for ckpt in (bare, wrapped):
        assert_matches_reference(ckpt, official, TINY_MIDIBERT, length=24)


def test_checkpoint_without_encoder_weights_is_refused(tmp_path: Path) -> None:
    official = official_midibert_state(TINY_MIDIBERT, seed=13)
    head_only = {key: tensor for key, tensor in finetuned_checkpoint(official, 32)["state_dict"].items()}
    head_only = {key: tensor for key, tensor in head_only.items() if not key.startswith("midibert.")}
    ckpt = tmp_path / "head_only.ckpt"
    torch.save({"state_dict": head_only}, ckpt)
    with pytest.raises(PoolingVQInputError, match="no encoder weights"):
        load_midibert_state_dict(ckpt)


def test_checkpoint_missing_one_layer_tensor_is_refused(tmp_path: Path) -> None:
    official = official_midibert_state(TINY_MIDIBERT, seed=14)
    del official["bert.encoder.layer.1.output.LayerNorm.bias"]
    ckpt = tmp_path / "broken.ckpt"
    torch.save({"state_dict": official}, ckpt)
    with pytest.raises(PoolingVQInputError, match=r"missing: encoder\.layer\.1\.output\.LayerNorm\.bias"):
        load_midibert_state_dict(ckpt)


def test_unreadable_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PoolingVQInputError, match="no such file"):
        load_midibert_state_dict(tmp_path / "absent.ckpt")
    ckpt = tmp_path / "garbage.ckpt"
    ckpt.write_bytes(b"\x00" * 64)
    with pytest.raises(PoolingVQInputError, match="cannot read weights"):
        load_midibert_state_dict(ckpt)


@pytest.mark.slow
def test_full_size_finetuned_checkpoint_imports_exactly(tmp_path: Path) -> None:
    official = official_midibert_state(FULL_MIDIBERT, seed=15)
    ckpt = tmp_path / "emotion_model_best.ckpt"
    torch.save(finetuned_checkpoint(official, FULL_MIDIBERT["hidden"]), ckpt)
    assert_matches_reference(ckpt, official, FULL_MIDIBERT, length=48)


# ------------------------------------------------------------------------------------------ whole model, CLI


def write_tiny_official_files(folder: Path) -> tuple[Path, HubertModel, Path, dict[str, torch.Tensor]]:
    """A tiny MERT folder and a tiny fine-tuned MIDI-BERT checkpoint, with what they were saved from."""
    mert = reference_hubert(TINY_AUDIO_CONFIG, seed=20)
    mert_dir = write_mert_folder(
        folder / "MERT-v1-95M",
        mert_config_json(TINY_AUDIO_CONFIG),
        old_weight_norm_names(mert.state_dict()),
        "pytorch_model.bin",
    )
    midibert = official_midibert_state(TINY_MIDIBERT, seed=21)
    ckpt = folder / "emotion_model_best.ckpt"
    torch.save(finetuned_checkpoint(midibert, TINY_MIDIBERT["hidden"]), ckpt)
    return mert_dir, mert, ckpt, midibert


def assert_encoders_hold_the_official_weights(
    model, mert: HubertModel, midibert: dict[str, torch.Tensor]
) -> None:
    assert_same_audio_outputs(model.audio_encoder.eval(), mert)
    tokens = padded_cp_tokens(2, 30, [30, 19], seed=22)
    with torch.no_grad():
        got = model.midi_encoder.eval()(tokens).last_hidden_state
    want = reference_midibert_forward(midibert, tokens, TINY_MIDIBERT["heads"])
    real = tokens[..., 0] != CP_PAD[0]
    torch.testing.assert_close(got[real], want[real], atol=ATOL, rtol=ATOL)


def test_import_official_weights_builds_the_paper_model(tmp_path: Path) -> None:
    from poolingvq.weights import import_official_weights

    mert_dir, mert, ckpt, midibert = write_tiny_official_files(tmp_path)
    model = import_official_weights(
        mert_dir, ckpt, fusion_hidden_size=32, fusion_num_heads=2, codebook_size=16
    )
    assert model.config.audio_sampling_rate == SAMPLING_RATE and model.config.audio_frame_rate == 75
    assert model.config.codebook_size == 16 and model.config.pooling == "poolingvq"  # preset + overrides
    assert model.config.midi_config.hidden_size == TINY_MIDIBERT["hidden"]
    assert_encoders_hold_the_official_weights(model, mert, midibert)


def test_import_weights_command_writes_a_loadable_model(tmp_path: Path, capsys) -> None:
    from poolingvq.cli import main
    from poolingvq.modeling_poolingvq import PoolingVQForMusicEmotion

    mert_dir, mert, ckpt, midibert = write_tiny_official_files(tmp_path)
    out = tmp_path / "poolingvq-model"
    assert main(["import-weights", "--mert", str(mert_dir), "--midibert", str(ckpt), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "MERT:" in printed and "MIDI-BERT:" in printed and str(out) in printed
    assert_encoders_hold_the_official_weights(PoolingVQForMusicEmotion.from_pretrained(out), mert, midibert)


def test_import_weights_command_reports_a_bad_checkpoint(tmp_path: Path, capsys) -> None:
    from poolingvq.cli import main

    mert_dir, _, _, _ = write_tiny_official_files(tmp_path)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"oops")
    args = ["import-weights", "--mert", str(mert_dir), "--midibert", str(bad), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "cannot read weights" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_midibert_folder_written_by_save_pretrained_imports_exactly(tmp_path: Path) -> None:
    """A converted MIDI-BERT (`MidiBertModel.save_pretrained`, the form it is shared in on the Hub) gives the
    encoder the checkpoint gives; a folder holding one official checkpoint is read as that checkpoint."""
    from poolingvq.weights import import_official_weights, load_midibert

    mert_dir, mert, ckpt, midibert = write_tiny_official_files(tmp_path)
    converted = imported_midibert(ckpt)
    converted.save_pretrained(tmp_path / "midibert-folder")
    model = import_official_weights(mert_dir, tmp_path / "midibert-folder")
    assert_encoders_hold_the_official_weights(model, mert, midibert)
    assert model.config.encoder_weights["midi"]["source"] == str((tmp_path / "midibert-folder").resolve())

    (tmp_path / "checkpoint-only").mkdir()
    (tmp_path / "checkpoint-only" / ckpt.name).write_bytes(ckpt.read_bytes())
    state, config, read = load_midibert(tmp_path / "checkpoint-only")
    assert read.name == ckpt.name and config.hidden_size == TINY_MIDIBERT["hidden"]
    assert all(torch.equal(state[name], tensor) for name, tensor in converted.state_dict().items())


def test_a_midibert_folder_missing_weights_is_refused(tmp_path: Path) -> None:
    """transformers would initialise the missing tensor at random and say so only in a log: refused instead."""
    from safetensors.torch import load_file

    from poolingvq.weights import load_midibert

    _, _, ckpt, _ = write_tiny_official_files(tmp_path)
    imported_midibert(ckpt).save_pretrained(tmp_path / "folder")
    weights = tmp_path / "folder" / "model.safetensors"
    state = load_file(weights)
    del state["embeddings.LayerNorm.bias"]
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(
        PoolingVQInputError, match="MIDI-BERT encoder weights missing or mis-shaped: embeddings.Layer"
    ):
        load_midibert(tmp_path / "folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PoolingVQInputError, match="neither a MidiBertModel folder"):
        load_midibert(tmp_path / "empty")
