"""PoolingVQForMusicEmotion: shapes, feature path, frozen encoders, ablations, save/load and remote code."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

import poolingvq  # noqa: F401  (registers the Auto classes)
from poolingvq.configuration_poolingvq import PoolingVQConfig
from poolingvq.modeling_poolingvq import PoolingVQForMusicEmotion


def random_cp_tokens(batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """`[B, L, 4]` CP tokens drawn from the real (non-special) part of each vocabulary."""
    highs = (2, 16, 86, 64)
    return torch.stack([torch.randint(0, h, (batch, length), generator=generator) for h in highs], -1)


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    waveform = torch.randn(2, 24000, generator=generator)
    attention_mask = torch.ones(2, 24000, dtype=torch.long)
    attention_mask[1, 15000:] = 0
    waveform[1, 15000:] = 0
    tokens = random_cp_tokens(2, 24, generator)
    tokens[1, 18:] = torch.tensor([2, 16, 86, 64])  # padding rows
    return {"input_values": waveform, "attention_mask": attention_mask, "midi_input_ids": tokens}


def tiny_model(**overrides) -> PoolingVQForMusicEmotion:
    torch.manual_seed(0)
    return PoolingVQForMusicEmotion(PoolingVQConfig.from_preset("tiny", **overrides)).eval()


def test_forward_shapes_and_loss(inputs):
    model = tiny_model()
    out = model(**inputs, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 4)
    # 1 s at 24 kHz -> 74 frames (MERT's conv stack), 15000 samples -> 46; windows of 5 / stride 3
    assert out.audio_lengths.tolist() == [74, 46]
    assert out.pooled_lengths.tolist() == [24, 15]
    assert out.midi_lengths.tolist() == [24, 18]
    assert out.codes.shape == (2, 74) and (out.codes[1, 46:] == -1).all()
    assert out.window_rules.shape == (2, 24) and set(out.window_rules[0].tolist()) <= {0, 1, 2}
    expected = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 2])) + out.vq_loss
    torch.testing.assert_close(out.loss, expected)


def test_cached_features_give_the_same_logits(inputs):
    model = tiny_model()
    # the model's one path from inputs to features, which the feature cache and the pipeline take
    audio, audio_mask = model.encode_audio(inputs["input_values"], inputs["attention_mask"])
    midi, midi_mask = model.encode_midi(inputs["midi_input_ids"])
    assert audio.shape == (2, 74, 32) and audio_mask.sum(-1).tolist() == [74, 46]
    assert midi.shape == (2, 24, 32) and midi_mask.sum(-1).tolist() == [24, 18]
    from_raw = model(**inputs).logits
    from_cache = model(
        audio_features=audio.half(),  # the cache stores fp16
        audio_features_mask=audio_mask,
        midi_features=midi.half(),
        midi_features_mask=midi_mask,
    ).logits
    torch.testing.assert_close(from_cache, from_raw, atol=2e-3, rtol=0)


def test_padded_batch_gives_each_item_its_own_logits():
    model = tiny_model()
    generator = torch.Generator().manual_seed(1)
    lengths, midi_lengths = [30, 17], [12, 7]
    audio = [torch.randn(n, 32, generator=generator) for n in lengths]
    midi = [torch.randn(n, 32, generator=generator) for n in midi_lengths]
    batch_audio = torch.nn.utils.rnn.pad_sequence(audio, batch_first=True, padding_value=7.0)
    batch_midi = torch.nn.utils.rnn.pad_sequence(midi, batch_first=True, padding_value=-7.0)
    audio_mask = torch.arange(30)[None] < torch.tensor(lengths)[:, None]
    midi_mask = torch.arange(12)[None] < torch.tensor(midi_lengths)[:, None]
    batched = model(
        audio_features=batch_audio,
        audio_features_mask=audio_mask,
        midi_features=batch_midi,
        midi_features_mask=midi_mask,
    ).logits
    for b in range(2):
        alone = model(audio_features=audio[b][None], midi_features=midi[b][None]).logits
        torch.testing.assert_close(batched[b], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["mert", "logmel"])
def test_encode_audio_gives_each_clip_of_a_padded_batch_its_features_alone(kind):
    # MERT's group norm spans the padded input, so padding would change a shorter clip's features: encode_audio
    # groups clips by length; log-mel is padding-exact and is encoded padded, in one pass
    audio_config = {"model_type": "poolingvq_logmel", "num_mel_bins": 40} if kind == "logmel" else None
    model = tiny_model(**({"audio_config": audio_config} if audio_config else {}))
    assert model.config.audio_encoder_kind == kind
    assert model.config.audio_padding_changes_features == (kind == "mert")
    generator = torch.Generator().manual_seed(3)
    clips = [torch.randn(n, generator=generator) for n in (24000, 15000, 24000)]
    batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    mask = torch.arange(24000)[None] < torch.tensor([len(c) for c in clips])[:, None]
    features, features_mask = model.encode_audio(batch, mask.long())
    for row, clip in enumerate(clips):
        alone, _ = model.get_audio_features(clip[None])
        assert int(features_mask[row].sum()) == alone.shape[1]
        torch.testing.assert_close(features[row, : alone.shape[1]], alone[0], atol=1e-5, rtol=1e-5)


def test_encode_midi_reads_a_long_piece_row_by_row():
    # a piece's kept rows, joined, are cut back into rows of max_midi_tokens, each read by MIDI-BERT alone
    model = tiny_model(max_midi_tokens=8)
    generator = torch.Generator().manual_seed(4)
    tokens = random_cp_tokens(2, 20, generator)
    mask = torch.arange(20)[None] < torch.tensor([[20], [5]])
    features, features_mask = model.encode_midi(tokens, mask)
    assert features_mask.sum(-1).tolist() == [20, 5]
    rows = [model.get_midi_features(tokens[:1, start : start + 8])[0][0] for start in (0, 8, 16)]
    torch.testing.assert_close(features[0], torch.cat(rows), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        features[1, :5], model.get_midi_features(tokens[1:, :5])[0][0], atol=1e-5, rtol=1e-5
    )
    assert (features[1, 5:] == 0).all()


def test_a_config_field_of_the_wrong_type_is_named(tmp_path):
    # Issue 11, failure 6: `"codebook_size": "abc"` in config.json gave a TypeError that named no field
    tiny_model().config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    cases = [
        ({"codebook_size": "abc"}, "PoolingVQConfig.codebook_size must be int, got 'abc'"),
        ({"window_size": 7.5}, "PoolingVQConfig.window_size must be int, got 7.5"),
        ({"vq_loss_weight": "1"}, "PoolingVQConfig.vq_loss_weight must be float, got '1'"),
        ({"fused_pooling": "no"}, "PoolingVQConfig.fused_pooling must be bool, got 'no'"),
        (
            {"midi_config": {**saved["midi_config"], "hidden_size": "32"}},
            "MidiBertConfig.hidden_size must be int",
        ),
    ]
    for change, message in cases:
        (tmp_path / "config.json").write_text(json.dumps({**saved, **change}))
        with pytest.raises(ValueError, match=re.escape(message)):
            PoolingVQConfig.from_pretrained(tmp_path)
    assert PoolingVQConfig(max_audio_seconds=30).max_audio_seconds == 30  # an int is a float


def test_encoders_are_frozen_and_stay_in_eval_mode(inputs):
    model = tiny_model()
    model.train()
    assert not model.audio_encoder.training and not model.midi_encoder.training
    assert model.fusion.training and model.classifier.training
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"quantizer", "fusion", "classifier"}
    out = model(**inputs, labels=torch.tensor([1, 3]))
    out.loss.backward()
    assert model.quantizer.codebook.grad is not None and model.quantizer.codebook.grad.abs().sum() > 0
    assert model.classifier[1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.audio_encoder.parameters())


def test_a_finetuned_midi_encoder_trains_while_the_audio_encoder_stays_frozen(inputs):
    model = tiny_model(finetune_midi_encoder=True)
    model.train()
    assert model.midi_encoder.training and not model.audio_encoder.training
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"quantizer", "fusion", "classifier", "midi_encoder"}
    # the audio path runs without a graph, the MIDI path with one (and without, under no_grad)
    audio, _ = model.get_audio_features(inputs["input_values"], inputs["attention_mask"])
    midi, _ = model.encode_midi(inputs["midi_input_ids"])
    assert not audio.requires_grad and midi.requires_grad
    with torch.no_grad():
        assert not model.encode_midi(inputs["midi_input_ids"])[0].requires_grad
    out = model(**inputs, labels=torch.tensor([1, 3]))
    out.loss.backward()
    assert model.midi_encoder.word_emb[2].lut.weight.grad.abs().sum() > 0  # the pitch embedding
    assert all(p.grad is None for p in model.audio_encoder.parameters())
    model.eval()
    assert not model.midi_encoder.training and not model.fusion.training


@pytest.mark.parametrize(
    ("overrides", "needs"),
    [
        ({"pooling": "none"}, {"audio", "midi"}),
        ({"pooling": "avg"}, {"audio", "midi"}),
        ({"pooling": "max"}, {"audio", "midi"}),
        ({"modalities": "audio"}, {"audio"}),
        ({"modalities": "midi"}, {"midi"}),
    ],
)
def test_ablations_run_on_their_own_inputs(inputs, overrides, needs):
    model = tiny_model(**overrides)
    feed = {}
    if "audio" in needs:
        feed.update(input_values=inputs["input_values"], attention_mask=inputs["attention_mask"])
    if "midi" in needs:
        feed.update(midi_input_ids=inputs["midi_input_ids"])
    out = model(**feed)
    assert out.logits.shape == (2, 4) and torch.isfinite(out.logits).all()
    if overrides.get("pooling") == "none":
        assert out.pooled_lengths.tolist() == out.audio_lengths.tolist()
        assert float(out.vq_loss) == 0.0
    if overrides.get("pooling") in ("avg", "max"):
        rule = {"avg": 0, "max": 2}[overrides["pooling"]]
        assert set(out.window_rules[out.window_rules >= 0].tolist()) == {rule}
    if overrides.get("modalities") == "midi":
        assert model.quantizer is None and out.codes is None
    missing = "audio" if "audio" in needs else "midi"
    with pytest.raises(ValueError, match=f"(?i)reads {missing}"):
        model(
            **{
                k: v
                for k, v in feed.items()
                if (missing == "audio") != (k in ("input_values", "attention_mask"))
            }
        )


def test_both_stages_readout_gives_audio_a_direct_path_to_the_head():
    midi_only_readout = tiny_model()
    both = tiny_model(fusion_readout="both")
    hidden = both.config.fusion_hidden_size
    assert midi_only_readout.classifier[1].in_features == hidden
    assert both.classifier[1].in_features == both.config.fused_size == 2 * hidden
    assert tiny_model(modalities="audio", fusion_readout="both").config.fused_size == hidden  # one stage only
    generator = torch.Generator().manual_seed(2)
    audio, midi = torch.randn(2, 30, 32, generator=generator), torch.randn(2, 12, 32, generator=generator)
    audio_mask = torch.arange(30)[None] < torch.tensor([[30], [21]])
    midi_mask = torch.arange(12)[None] < torch.tensor([[12], [9]])
    fusion = both.fusion
    with torch.no_grad():
        piece = fusion(audio, audio_mask, midi, midi_mask)
        audio_with_notes = fusion.audio_queries_midi(
            fusion.audio_projection(audio), fusion.midi_projection(midi), midi_mask
        )
    assert piece.shape == (2, 2 * hidden)
    for b, length in enumerate((30, 21)):  # the first half: stage 1 averaged over each clip's real windows
        torch.testing.assert_close(piece[b, :hidden], audio_with_notes[b, :length].mean(0))
    with pytest.raises(ValueError, match="fusion_readout"):
        PoolingVQConfig(fusion_readout="concat")


def test_midi_statistics_reach_the_head_and_go_with_the_midi():
    from poolingvq.performance_poolingvq import NUM_STATISTICS

    model = tiny_model(fusion_readout="both", modality_dropout=0.3, midi_statistics=True)
    hidden = model.config.fusion_hidden_size
    assert model.config.fused_size == 3 * hidden == model.classifier[1].in_features
    generator = torch.Generator().manual_seed(4)
    audio, midi = torch.randn(2, 30, 32, generator=generator), torch.randn(2, 12, 32, generator=generator)
    statistics = torch.randn(2, NUM_STATISTICS, generator=generator)
    features = {"audio_features": audio, "midi_features": midi}
    with torch.no_grad():
        logits = model(**features, midi_statistics=statistics).logits
        other = model(**features, midi_statistics=statistics.flip(0)).logits
        assert not torch.allclose(logits, other)  # the head reads them
        with pytest.raises(ValueError, match="midi_statistics"):
            model(**features)
        # audio alone: the statistics slot is the absent-MIDI token, as the MIDI sequence is
        piece = model.fusion(audio, torch.ones(2, 30, dtype=torch.bool), None, None)
        torch.testing.assert_close(piece[:, 2 * hidden :], model.fusion.absent_midi.expand(2, -1))
        model(audio_features=audio)  # answers without statistics
        hidden_midi = model.fusion(
            audio, torch.ones(2, 30, dtype=torch.bool), midi, torch.ones(2, 12, dtype=torch.bool),
            hide_midi=torch.tensor([True, False]), statistics=statistics,
        )  # fmt: skip
    torch.testing.assert_close(hidden_midi[0, 2 * hidden :], model.fusion.absent_midi)
    assert not torch.allclose(hidden_midi[1, 2 * hidden :], model.fusion.absent_midi)
    audio_only = tiny_model(modalities="audio", midi_statistics=True)  # the ablation reads no MIDI at all
    assert not audio_only.config.reads_midi_statistics and audio_only.config.fused_size == hidden
    assert not hasattr(audio_only.fusion, "statistics_projection")
    midi_only = tiny_model(modalities="midi", midi_statistics=True)
    assert midi_only.config.fused_size == 2 * hidden
    assert midi_only(midi_features=midi, midi_statistics=statistics).logits.shape == (2, 4)


def test_an_unknown_statistic_is_read_as_the_training_mean():
    """NaN marks a statistic the MIDI cannot know (a transcription's velocities): the model reads the value its
    standardization was fitted to, the training clips' mean, and the others as given."""
    from poolingvq.performance_poolingvq import NUM_STATISTICS

    model = tiny_model(midi_statistics=True)
    generator = torch.Generator().manual_seed(5)
    model.fusion.statistics_projection[0].fit([3 + 2 * torch.randn(50, NUM_STATISTICS, generator=generator)])
    audio, midi = torch.randn(2, 30, 32, generator=generator), torch.randn(2, 12, 32, generator=generator)
    statistics = torch.randn(2, NUM_STATISTICS, generator=generator)
    unknown = statistics.clone()
    unknown[0, [3, 4]] = torch.nan
    at_mean = statistics.clone()
    at_mean[0, [3, 4]] = model.fusion.statistics_projection[0].mean[[3, 4]]
    features = {"audio_features": audio, "midi_features": midi}
    with torch.no_grad():
        logits = model(**features, midi_statistics=unknown).logits
        torch.testing.assert_close(logits, model(**features, midi_statistics=at_mean).logits)
        torch.testing.assert_close(logits[1], model(**features, midi_statistics=statistics).logits[1])
        assert torch.isfinite(logits).all()


def test_config_presets_and_validation():
    paper = PoolingVQConfig.from_preset("paper")
    assert paper.audio_config.hidden_size == 768 and paper.audio_config.num_hidden_layers == 12
    assert paper.audio_config.conv_kernel == [10, 3, 3, 3, 3, 2, 2] and not paper.audio_config.conv_bias
    assert paper.audio_frame_rate == 75.0 and paper.audio_sampling_rate == 24000
    assert paper.midi_config.cp_vocab_sizes == [4, 18, 88, 66] and paper.midi_config.layer_norm_eps == 1e-12
    assert paper.id2label == {0: "Q1", 1: "Q2", 2: "Q3", 3: "Q4"} and paper.num_labels == 4
    assert paper.window_size == 5 and paper.window_stride == 3
    tiny = sum(p.numel() for p in PoolingVQForMusicEmotion(PoolingVQConfig.from_preset("tiny")).parameters())
    assert 20_000 < tiny < 1_000_000
    with pytest.raises(ValueError, match="pooling"):
        PoolingVQConfig(pooling="median")
    with pytest.raises(ValueError, match="preset"):
        PoolingVQConfig.from_preset("huge")


def test_save_and_reload_with_auto_classes(tmp_path, inputs):
    model = tiny_model()
    with torch.no_grad():
        model.quantizer.init_codebook(torch.randn(200, 32), seed=3)
    model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    umask = os.umask(0)
    os.umask(umask)  # the weights get a plain open()'s mode, not the 0600 safetensors' save_file gives
    assert stat.S_IMODE((tmp_path / "model.safetensors").stat().st_mode) == 0o666 & ~umask
    assert {
        "config.json",
        "model.safetensors",
        "modeling_poolingvq.py",
        "configuration_poolingvq.py",
    } <= files
    assert {"quantization_poolingvq.py", "midibert_poolingvq.py"} <= files
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_poolingvq.PoolingVQForMusicEmotion"
    assert (
        config["auto_map"]["AutoModelForAudioClassification"] == "modeling_poolingvq.PoolingVQForMusicEmotion"
    )
    assert config["auto_map"]["AutoConfig"] == "configuration_poolingvq.PoolingVQConfig"
    assert isinstance(AutoConfig.from_pretrained(tmp_path), PoolingVQConfig)
    for auto in (AutoModel, AutoModelForAudioClassification):
        loaded = auto.from_pretrained(tmp_path).eval()
        assert bool(loaded.quantizer.initialized)
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits)


REMOTE_LOAD = """
import importlib.abc, json, sys, os
class NoPoolingVQ(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "poolingvq" or name.startswith("poolingvq."):
            raise ImportError("poolingvq is blocked in this process")
sys.meta_path.insert(0, NoPoolingVQ())
import torch
from transformers import AutoModel
feed = torch.load(sys.argv[1])
results = {}
for folder in sys.argv[2:]:
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        results[os.path.basename(folder)] = (model(**feed).logits, type(model).__module__)
assert "poolingvq" not in sys.modules
torch.save(results, os.path.join(os.path.dirname(sys.argv[1]), "out.pt"))
"""


def test_remote_code_round_trip_without_the_package(tmp_path, inputs):
    models = {"mert": tiny_model(), "logmel": tiny_model(audio_config={"model_type": "poolingvq_logmel"})}
    for name, model in models.items():
        model.save_pretrained(tmp_path / name)
    torch.save(inputs, tmp_path / "inputs.pt")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    script = tmp_path / "load.py"
    script.write_text(textwrap.dedent(REMOTE_LOAD))
    # run from tmp_path so the repository's own folder is not on sys.path either
    subprocess.run(
        [
            sys.executable,
            str(script),
            str(tmp_path / "inputs.pt"),
            *(str(tmp_path / name) for name in models),
        ],
        check=True,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=300,
    )
    results = torch.load(tmp_path / "out.pt")
    for name, model in models.items():
        logits, module = results[name]
        assert module.startswith("transformers_modules")
        with torch.no_grad():
            assert torch.equal(logits, model(**inputs).logits), name


def test_log_mel_front_end_runs_at_merts_frame_rate_and_batches_exactly():
    model = tiny_model(audio_config={"model_type": "poolingvq_logmel", "num_mel_bins": 40})
    assert sum(p.numel() for p in model.audio_encoder.parameters()) == 0  # nothing to download or train
    assert model.config.audio_frame_rate == 75.0
    generator = torch.Generator().manual_seed(2)
    t = torch.arange(48000) / 24000
    tone = torch.sin(2 * torch.pi * 1000 * t)  # a 1 kHz tone: its energy sits in the mel bins around 1 kHz
    noise = torch.randn(30000, generator=generator)
    batch = torch.zeros(2, 48000)
    batch[0], batch[1, :30000] = tone, noise
    mask = torch.zeros(2, 48000, dtype=torch.long)
    mask[0], mask[1, :30000] = 1, 1
    features, frame_mask = model.get_audio_features(batch, mask)
    assert features.shape == (2, 151, 40) and frame_mask.sum(-1).tolist() == [151, 94]  # S // 320 + 1
    alone, _ = model.get_audio_features(noise[None])
    torch.testing.assert_close(features[1, :94], alone[0], atol=1e-5, rtol=1e-5)
    # the loudest mel bin is the one whose triangle peaks at 1 kHz (FFT bin 1000 / (24000 / 1024) ~ 43)
    fft_bin = round(1000 / (24000 / 1024))
    assert int(features[0, 75].argmax()) == int(model.audio_encoder.mel_filters[fft_bin].argmax())
    # the dynamic range is clamped to 8 decades below the clip's peak, i.e. 2 after the (x + 4) / 4 scaling
    assert float(features[0].max() - features[0].min()) <= 2.0 + 1e-5


def test_remote_files_import_only_what_a_user_installs():
    """Every file a saved model folder carries (the `*_poolingvq.py` siblings and the pipeline's own file) imports
    only the standard library, its siblings and the libraries the package's dependencies name for remote code."""
    allowed = {"torch", "numpy", "transformers", "soundfile", "soxr", "symusic"}
    # imported only inside the function that transcribes, and only when asked: a folder loads without it
    optional = {"transcription_poolingvq.py": {"basic_pitch"}}
    package = Path(poolingvq.__file__).parent
    import ast

    remote_files = [*package.glob("*_poolingvq.py"), package / "pipeline_music_emotion.py"]
    assert len(remote_files) > 10
    for path in remote_files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: must be a sibling remote-code file
                    assert (package / f"{node.module}.py").exists() and node.module.endswith("_poolingvq"), (
                        path,
                        node.module,
                    )
                    continue
                roots = {node.module.split(".")[0]}
            else:
                continue
            stdlib = {r for r in roots if r in sys.stdlib_module_names or r == "__future__"}
            extra = roots - stdlib - allowed - optional.get(path.name, set())
            assert not extra, f"{path.name} imports {extra}"
