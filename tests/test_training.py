"""`poolingvq train` end to end (tiny preset, synthesized audio): on clips the tests write themselves, and on real
EMOPIA clips where `../shared` has them; its resume, its model folder and its flags."""

from __future__ import annotations

import json
from dataclasses import replace as dataclasses_replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from shared_data import DATA_DIR, needs_emopia
from symusic import Note, Score, Track

from poolingvq import QUADRANT_LABELS, PoolingVQForMusicEmotion
from poolingvq.predict import load_pipeline
from poolingvq.training import (
    BEST_WEIGHTS_FILENAME,
    TRAINED_PARTS,
    TrainingArguments,
    build_model,
    classification_metrics,
    make_optimizer,
    modality_reliance,
    train,
    trained_parts,
    trained_state,
)

#: How each quadrant's written clips sound: (lowest pitch, notes per beat, velocity), far apart so that a tiny
#: model on random encoders tells them apart within a few epochs.
QUADRANT_STYLES = {0: (76, 4, 110), 1: (40, 4, 120), 2: (36, 1, 50), 3: (64, 1, 45)}
#: Written clips per quadrant in each split.
WRITTEN_CLIPS = {"train": 8, "validation": 4, "test": 2}


def write_clip(path: Path, label: int, variant: int) -> None:
    """Two bars of one quadrant's style (`QUADRANT_STYLES`), its melody shifted by `variant`."""
    lowest, per_beat, velocity = QUADRANT_STYLES[label]
    step = 480 // per_beat
    track = Track(name="piano", program=0)
    for index in range(8 * per_beat):
        pitch = lowest + (3 * variant + 5 * index) % 12
        track.notes.append(Note(time=index * step, duration=step, pitch=pitch, velocity=velocity))
    score = Score(480)
    score.tracks.append(track)
    score.dump_midi(path)


@pytest.fixture(scope="module")
def written_clips(tmp_path_factory) -> dict[str, list[dict]]:
    """Clips in the form `load_split_clips` returns, from MIDI files written here: no `../shared` needed."""
    folder = tmp_path_factory.mktemp("written-midi")
    clips: dict[str, list[dict]] = {}
    for split_index, (split, per_quadrant) in enumerate(WRITTEN_CLIPS.items()):
        clips[split] = []
        for label in range(4):
            for number in range(per_quadrant):
                clip_id = f"{QUADRANT_LABELS[label]}_{split}_{number}"
                write_clip(folder / f"{clip_id}.mid", label, variant=100 * split_index + number)
                clip = {
                    "id": clip_id,
                    "midi_path": str(folder / f"{clip_id}.mid"),
                    "audio_path": None,
                    "label": label,
                }
                clips[split].append(clip)
    return clips


def arguments(output_dir: Path, cache_dir: Path, **overrides) -> TrainingArguments:
    """The paper's recipe on 40 real EMOPIA clips with the tiny preset; 5-s audio crops keep CI fast, and a
    larger head learning rate lets the loss move within a few epochs."""
    fields = {
        "dataset": "emopia",
        "data_dir": str(DATA_DIR / "emopia"),
        "model_init": "tiny",
        "allow_random_encoders": True,  # the tiny preset's encoders are random by design
        "output_dir": str(output_dir),
        "cache_dir": str(cache_dir),
        "max_train_samples": 40,
        "max_eval_samples": 12,
        "epochs": 3,
        "batch_size": 8,
        "lr_head": 1e-3,
        "midi_mode": "rescaled",
        "max_audio_seconds": 5.0,
        "early_stopping_patience": 10,
        "seed": 3,
    }
    fields.update(overrides)
    return TrainingArguments(**fields)


def written_clip_arguments(output_dir: Path, cache_dir: Path, **overrides) -> TrainingArguments:
    """The paper's recipe on the written clips with the tiny preset: 2-s clips, and a learning rate high enough for
    the head to tell the quadrants apart within 20 epochs."""
    fields = {
        "data_dir": None,
        "max_train_samples": None,
        "max_eval_samples": None,
        "epochs": 20,
        "batch_size": 4,
        "lr_head": 1e-2,
        "max_audio_seconds": 2.0,
        "early_stopping_patience": 20,
        "progress": False,
    }
    return arguments(output_dir, cache_dir, **{**fields, **overrides})


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("run") / "uninterrupted"
    return output, train(arguments(output, cache_dir))


@pytest.fixture(scope="module")
def trained_on_written_clips(tmp_path_factory, cache_dir, written_clips) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("run") / "written"
    return output, train(written_clip_arguments(output, cache_dir), written_clips)


def test_train_takes_clips_and_its_model_folder_predicts_them_as_metrics_json_says(
    trained_on_written_clips, written_clips
):
    output, metrics = trained_on_written_clips
    assert json.loads((output / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    counts = {split: per_quadrant * 4 for split, per_quadrant in WRITTEN_CLIPS.items()}
    assert metrics["train_clips"] == counts["train"]
    assert (metrics["validation"]["count"], metrics["test"]["count"]) == (
        counts["validation"],
        counts["test"],
    )
    assert metrics["epochs_run"] == len(metrics["history"]) == 20
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"]
    best = metrics["history"][metrics["best_epoch"] - 1]
    assert best["val/macro_f1"] == max(epoch["val/macro_f1"] for epoch in metrics["history"])
    assert best["val/macro_f1"] == pytest.approx(metrics["validation"]["macro_f1"])
    losses = [epoch["train/loss"] for epoch in metrics["history"]]
    assert min(losses[-5:]) < 0.8 * losses[0]
    assert metrics["validation"]["accuracy"] > 0.5  # the quadrants sound far apart: it learnt them

    # the folder loads on its own and holds the best epoch's trained weights
    model = PoolingVQForMusicEmotion.from_pretrained(output)
    for name, tensor in load_file(output / BEST_WEIGHTS_FILENAME).items():
        assert name.split(".")[0] in TRAINED_PARTS
        assert torch.equal(model.state_dict()[name], tensor), name
    # from the MIDI files, through the pipeline: the test predictions metrics.json counted
    classify, _ = load_pipeline(output)
    labels = [clip["label"] for clip in written_clips["test"]]
    predicted = [
        QUADRANT_LABELS.index(classify(clip["midi_path"])[0]["label"]) for clip in written_clips["test"]
    ]
    again = classification_metrics(labels, predicted)
    assert again["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    assert again["accuracy"] == metrics["test"]["accuracy"]


@pytest.fixture(scope="module")
def finetuned_on_written_clips(tmp_path_factory, cache_dir, written_clips) -> tuple[Path, dict]:
    """A run that fine-tunes the MIDI encoder, its notes transposed up to a tone, on the frozen run's cached audio
    (same encoders, same keys)."""
    output = tmp_path_factory.mktemp("run") / "finetuned"
    arguments = written_clip_arguments(
        output, cache_dir, finetune_midi_encoder=True, transpose_midi=2, epochs=6
    )
    return output, train(arguments, written_clips)


def predicted_test_metrics(output: Path, written_clips: dict) -> dict:
    """The written test clips classified from their MIDI files by the model folder's pipeline."""
    classify, _ = load_pipeline(output)
    labels = [clip["label"] for clip in written_clips["test"]]
    predicted = [
        QUADRANT_LABELS.index(classify(clip["midi_path"])[0]["label"]) for clip in written_clips["test"]
    ]
    return classification_metrics(labels, predicted)


def test_finetuning_the_midi_encoder_trains_it_and_its_folder_predicts_as_metrics_json_says(
    finetuned_on_written_clips, written_clips, cache_dir
):
    output, metrics = finetuned_on_written_clips
    assert json.loads((output / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["epochs_run"] == len(metrics["history"]) == 6
    losses = [epoch["train/loss"] for epoch in metrics["history"]]
    assert min(losses[1:]) < losses[0]
    first = metrics["history"][0]
    assert (first["lr/head"], first["lr/quantizer"], first["lr/midi_encoder"]) == (1e-2, 5e-5, 2e-5)
    assert set(metrics["test"]["modality_reliance"]) == {"audio", "midi"}  # swapped the tokens, not features

    # the folder loads on its own: its MIDI encoder is the trained one, its audio encoder the initial one
    model = PoolingVQForMusicEmotion.from_pretrained(output)
    assert model.config.finetune_midi_encoder
    initial = build_model(written_clip_arguments(output, cache_dir, finetune_midi_encoder=True))
    saved, start = model.midi_encoder.state_dict(), initial.midi_encoder.state_dict()
    changed = [name for name, tensor in start.items() if not torch.equal(saved[name], tensor)]
    assert len(changed) > len(start) // 2, changed
    for name, tensor in initial.audio_encoder.state_dict().items():
        assert torch.equal(model.audio_encoder.state_dict()[name], tensor), name
    # the best epoch's weights, MIDI encoder included, are the folder's
    best = load_file(output / BEST_WEIGHTS_FILENAME)
    assert {name.split(".")[0] for name in best} == {*TRAINED_PARTS, "midi_encoder"}
    assert {f"midi_encoder.{name}" for name in saved} <= set(best)
    for name, tensor in best.items():
        assert torch.equal(model.state_dict()[name], tensor), name
    # from the MIDI files, through the pipeline: the test predictions metrics.json counted
    again = predicted_test_metrics(output, written_clips)
    assert again["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    assert again["accuracy"] == metrics["test"]["accuracy"]
    card = (output / "README.md").read_text()
    assert "fine-tuned with the head by --finetune-midi-encoder at lr 2e-05, weight decay 0.01" in card
    assert "midi - random, untrained weights (seed 0), then fine-tuned here" in card
    assert "the MIDI encoder started from random, untrained weights (seed 0) and was fine-tuned here" in card
    assert " --finetune-midi-encoder " in card and " --transpose-midi 2" in card


def test_a_run_with_midi_statistics_fits_their_standardization_and_its_folder_predicts_as_metrics_json_says(
    tmp_path, cache_dir, written_clips
):
    """`midi_statistics=true`: each clip's performance statistics are read from its MIDI file once, standardized
    over the training clips, and the saved folder computes them itself through its processor."""
    from poolingvq.performance_poolingvq import STATISTIC_NAMES, performance_statistics

    output = tmp_path / "statistics"
    metrics = train(
        written_clip_arguments(output, cache_dir, config_overrides="midi_statistics=true", epochs=8),
        written_clips,
    )
    model = PoolingVQForMusicEmotion.from_pretrained(output)
    assert model.config.midi_statistics and model.classifier[1].in_features == model.config.fused_size
    standardization = model.fusion.statistics_projection[0]
    train_rows = torch.from_numpy(
        np.stack([performance_statistics(c["midi_path"]) for c in written_clips["train"]])
    )
    torch.testing.assert_close(standardization.mean, train_rows.double().mean(0).float())
    velocity = STATISTIC_NAMES.index("velocity_mean")
    assert float(standardization.std[velocity]) > 0.1  # the written quadrants are played at 45..120
    assert set(metrics["test"]["modality_reliance"]) == {"audio", "midi"}
    again = predicted_test_metrics(output, written_clips)
    assert again["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    assert (
        "the MIDI's performance statistics (velocity, notes per second" in (output / "README.md").read_text()
    )


def test_a_run_on_transcribed_training_audio_adds_each_rendering_read_as_a_recording(
    tmp_path, cache_dir, written_clips, capsys
):
    """`--transcribed-training-audio`: every training rendering once more, with the notes basic-pitch transcribes
    from it in place of its MIDI (made once, kept beside the feature cache); the standardization of the statistics
    is the MIDI files' own, as a transcription's unknown statistics are read as that mean."""
    from poolingvq.cli import main
    from poolingvq.files_poolingvq import sha256_file
    from poolingvq.performance_poolingvq import performance_statistics
    from poolingvq.transcription_poolingvq import transcription_available

    if not transcription_available():
        pytest.skip("basic-pitch is not installed (bash scripts/install_transcription.sh)")
    output = tmp_path / "transcribed"
    arguments = written_clip_arguments(
        output,
        cache_dir,
        config_overrides="midi_statistics=true,modality_dropout=0.3",
        transcribed_training_audio=True,
        epochs=2,
    )
    metrics = train(arguments, written_clips)
    train_clips = len(written_clips["train"])
    assert metrics["train_clips"] == 2 * train_clips
    made = cache_dir / "transcriptions"
    # one per distinct MIDI (some written clips are the same notes)
    distinct = len({sha256_file(clip["midi_path"]) for clip in written_clips["train"]})
    assert len(list(made.glob("*.mid"))) == len(list(made.glob("*.flac"))) == distinct
    standardization = PoolingVQForMusicEmotion.from_pretrained(output).fusion.statistics_projection[0]
    performed = torch.from_numpy(
        np.stack([performance_statistics(c["midi_path"]) for c in written_clips["train"]])
    )
    torch.testing.assert_close(standardization.mean, performed.double().mean(0).float())
    assert " --transcribed-training-audio " in (output / "README.md").read_text()
    stamps = {path: path.stat().st_mtime_ns for path in made.iterdir()}
    train(dataclasses_replace(arguments, output_dir=str(tmp_path / "again"), epochs=1), written_clips)
    assert {path: path.stat().st_mtime_ns for path in made.iterdir()} == stamps  # made once
    argv = ["train", "--model-init", "tiny", "--allow-random-encoders", "--transcribed-training-audio"]
    assert main([*argv, "--modalities", "audio", "--output-dir", str(tmp_path / "audio")]) == 2
    assert "--transcribed-training-audio" in capsys.readouterr().err


def test_a_transcription_statistics_are_read_as_the_model_reads_them(written_clips):
    """`SplitFeatures.read_statistics`: a transcription's statistics as `PoolingVQConfig.transcribed_statistics`
    says (unknown: NaN where it cannot know; as transcribed: all of them), a MIDI file's always all of them."""
    from poolingvq.performance_poolingvq import UNKNOWN_FROM_TRANSCRIPTION, performance_statistics
    from poolingvq.training import SplitFeatures

    path = written_clips["train"][0]["midi_path"]
    features = SplitFeatures()
    features.add("train", ["performed"], [0], [path])
    features.add("train", ["transcribed"], [0], [path], transcribed=True)
    features.read_statistics("unknown")
    performed, transcribed = features.midi_statistics["train"]
    assert not performed.isnan().any()
    assert int(transcribed.isnan().sum()) == len(UNKNOWN_FROM_TRANSCRIPTION)
    features.read_statistics("as_transcribed")
    expected = torch.from_numpy(performance_statistics(path))
    torch.testing.assert_close(features.midi_statistics["train"], torch.stack([expected, expected]))


def test_a_weight_average_is_what_is_evaluated_kept_and_checkpointed(tmp_path, cache_dir, written_clips):
    """`--weight-average-decay`: an exponential moving average of the trained weights; the best epoch's weights
    are the average's, not the last step's, and the checkpoint keeps the average for `--resume`."""
    from poolingvq.training import weight_average

    model = build_model(arguments(tmp_path / "unit", cache_dir))
    average = weight_average(model, 0.9)
    weight = model.classifier[1].weight
    first = weight.detach().clone()
    average.update_parameters(model)  # the first update copies
    with torch.no_grad():
        weight.add_(1.0)
    average.update_parameters(model)
    torch.testing.assert_close(average.module.classifier[1].weight, 0.9 * first + 0.1 * (first + 1.0))
    assert weight_average(model, None) is None
    with pytest.raises(ValueError, match="--weight-average-decay"):
        weight_average(model, 1.0)

    output = tmp_path / "averaged"
    metrics = train(
        written_clip_arguments(output, cache_dir, epochs=1, weight_average_decay=0.9), written_clips
    )
    assert metrics["best_epoch"] == 1
    kept = load_file(output / BEST_WEIGHTS_FILENAME)
    checkpoint = output / "checkpoints" / "epoch_0001"
    last_step = load_file(checkpoint / "model.safetensors")
    averaged = torch.load(checkpoint / "custom_checkpoint_2.pkl", weights_only=False)
    name = "classifier.1.weight"
    torch.testing.assert_close(kept[name], averaged[f"module.{name}"])
    assert not torch.allclose(kept[name], last_step[name])
    resumed = train(
        written_clip_arguments(output, cache_dir, epochs=2, weight_average_decay=0.9, resume=True),
        written_clips,
    )
    assert resumed["history"][0] == metrics["history"][0] and len(resumed["history"]) == 2


def test_audio_tilt_augmentation_tilts_only_the_log_mel_bins_of_training_batches(tmp_path, capsys):
    from poolingvq.cli import main
    from poolingvq.training import tilt_log_mel

    frames = torch.randn(3, 5, 20)
    tilted = tilt_log_mel(frames, 16, 0.5, torch.Generator().manual_seed(0))
    change = tilted - frames
    assert torch.equal(change[..., 16:], torch.zeros(3, 5, 4))  # chroma, key and onsets untouched
    torch.testing.assert_close(change[:, :1], change[:, 1:2])  # one tilt per clip, the same in every frame
    slopes = change[:, 0, 15] - change[:, 0, 0]  # highest minus lowest bin
    assert (slopes.abs() <= 0.5).all() and len(set(slopes.tolist())) == 3
    torch.testing.assert_close(
        change[:, 0, :16].mean(-1), torch.zeros(3)
    )  # a tilt about the middle: no level change
    # the MERT front end has no log-mel bins to tilt: refused before anything runs
    argv = ["train", "--model-init", "tiny", "--allow-random-encoders", "--audio-tilt-augmentation", "0.3"]
    assert main([*argv, "--output-dir", str(tmp_path)]) == 2
    assert "--audio-tilt-augmentation" in capsys.readouterr().err


def test_statistics_dropout_hides_what_a_transcription_cannot_know(tmp_path, capsys):
    from poolingvq.cli import main
    from poolingvq.performance_poolingvq import STATISTIC_NAMES, UNKNOWN_FROM_TRANSCRIPTION
    from poolingvq.training import hide_statistics

    statistics = torch.rand(400, len(STATISTIC_NAMES))
    hidden = hide_statistics(statistics, 0.3, torch.Generator().manual_seed(0))
    unknown = [STATISTIC_NAMES.index(name) for name in UNKNOWN_FROM_TRANSCRIPTION]
    rows = hidden[:, unknown].isnan().all(1)
    assert torch.equal(hidden[:, unknown].isnan().any(1), rows)  # a row hides all of them or none
    assert 0.2 < rows.float().mean() < 0.4
    known = [i for i in range(len(STATISTIC_NAMES)) if i not in unknown]
    torch.testing.assert_close(hidden[:, known], statistics[:, known])  # the rest untouched
    torch.testing.assert_close(hidden[~rows], statistics[~rows])
    # a model without statistics has none to hide: refused before anything runs
    argv = ["train", "--model-init", "tiny", "--allow-random-encoders", "--statistics-dropout", "0.3"]
    assert main([*argv, "--output-dir", str(tmp_path)]) == 2
    assert "--statistics-dropout" in capsys.readouterr().err
    argv = ["train", "--model-init", "tiny", "--allow-random-encoders", "--weight-average-decay", "1"]
    assert main([*argv, "--output-dir", str(tmp_path)]) == 2
    assert "--weight-average-decay: must be in (0, 1)" in capsys.readouterr().err


def test_transposing_notes_moves_pitches_and_pitch_levels_within_midibert_range(tmp_path, capsys):
    from poolingvq.cli import main
    from poolingvq.performance_poolingvq import PITCH_LEVEL_STATISTICS, STATISTIC_NAMES
    from poolingvq.tokenization_poolingvq import PAD_TOKEN
    from poolingvq.training import transpose_notes

    pad = torch.tensor(PAD_TOKEN)
    ids = pad.repeat(64, 5, 1)
    ids[:, :3] = torch.tensor([[0, 0, 40, 5], [1, 4, 47, 5], [1, 8, 52, 9]])  # three notes, then padding
    ids[0, :3, 2] = torch.tensor([0, 1, 2])  # lowest pitches: can only go up
    ids[1, :3, 2] = torch.tensor([83, 84, 85])  # highest: can only go down
    mask = torch.arange(5)[None, :] < 3
    statistics = torch.rand(64, len(STATISTIC_NAMES))
    statistics[5, 0] = float("nan")  # unknown stays unknown
    batch = {"midi_input_ids": ids, "midi_attention_mask": mask.expand(64, 5), "midi_statistics": statistics}
    out = transpose_notes(batch, 2, torch.Generator().manual_seed(0))

    shift = out["midi_input_ids"][:, 0, 2] - ids[:, 0, 2]  # [B]
    assert set(shift.tolist()) == {-2, -1, 0, 1, 2}
    assert shift[0] >= 0 and shift[1] <= 0
    torch.testing.assert_close(out["midi_input_ids"][..., 2], ids[..., 2] + shift[:, None] * mask)
    assert torch.equal(
        out["midi_input_ids"][..., [0, 1, 3]], ids[..., [0, 1, 3]]
    )  # bar, position, duration kept
    assert torch.equal(out["midi_input_ids"][:, 3:], ids[:, 3:])  # padding kept
    levels = [STATISTIC_NAMES.index(name) for name in PITCH_LEVEL_STATISTICS]
    others = [i for i in range(len(STATISTIC_NAMES)) if i not in levels]
    torch.testing.assert_close(
        out["midi_statistics"][:, levels], statistics[:, levels] + shift[:, None] / 127
    )
    torch.testing.assert_close(out["midi_statistics"][:, others], statistics[:, others], equal_nan=True)
    assert torch.equal(batch["midi_input_ids"], ids)  # the caller's batch is not changed
    # cached MIDI features cannot be transposed: refused before anything runs
    argv = ["train", "--model-init", "tiny", "--allow-random-encoders", "--transpose-midi", "2"]
    assert main([*argv, "--output-dir", str(tmp_path)]) == 2
    assert "--transpose-midi: transposes CP tokens" in capsys.readouterr().err
    assert main([*argv[:-1], "13", "--finetune-midi-encoder", "--output-dir", str(tmp_path)]) == 2
    assert "--transpose-midi: must be in 0..12" in capsys.readouterr().err


def test_only_a_finetuning_run_trains_and_saves_the_midi_encoder(tmp_path, capsys):
    from poolingvq import PoolingVQConfig
    from poolingvq.cli import main
    from poolingvq.training import init_config, training_flags

    frozen_args = arguments(tmp_path / "frozen", tmp_path / "cache")
    frozen = build_model(frozen_args)
    assert [group["name"] for group in make_optimizer(frozen, frozen_args).param_groups] == [
        "head",
        "quantizer",
    ]
    assert trained_parts(frozen.config) == TRAINED_PARTS
    assert {name.split(".")[0] for name in trained_state(frozen)} == set(TRAINED_PARTS)
    assert not any(p.requires_grad for p in frozen.midi_encoder.parameters())

    tuned_args = arguments(tmp_path / "tuned", tmp_path / "cache", finetune_midi_encoder=True)
    tuned = build_model(tuned_args)
    groups = {group["name"]: group for group in make_optimizer(tuned, tuned_args).param_groups}
    assert list(groups) == ["head", "quantizer", "midi_encoder"]
    assert (groups["midi_encoder"]["lr"], groups["midi_encoder"]["weight_decay"]) == (2e-5, 0.01)
    assert {id(p) for p in groups["midi_encoder"]["params"]} == {
        id(p) for p in tuned.midi_encoder.parameters()
    }
    assert trained_parts(tuned.config) == (*TRAINED_PARTS, "midi_encoder")
    assert {name.split(".")[0] for name in trained_state(tuned)} == {*TRAINED_PARTS, "midi_encoder"}
    # the same encoders as a frozen run's: one feature cache serves both
    for name, tensor in frozen.state_dict().items():
        if name.split(".")[0] in ("audio_encoder", "midi_encoder"):
            assert torch.equal(tuned.state_dict()[name], tensor), name

    # the card's command names the MIDI encoder's learning rate only for a run that fine-tunes it
    assert not [flag for flag in training_flags(frozen_args) if "midi-encoder" in flag]
    assert {"--finetune-midi-encoder", "--lr-midi-encoder 2e-05"} <= set(training_flags(tuned_args))

    # fine-tuning is the run's choice: a --model-init folder's config does not carry it over
    folder = tmp_path / "saved"
    PoolingVQConfig.from_preset("tiny", finetune_midi_encoder=True).save_pretrained(folder)
    assert not init_config(TrainingArguments(model_init=str(folder))).finetune_midi_encoder
    on = TrainingArguments(model_init="tiny", config_overrides="finetune_midi_encoder=true")
    assert init_config(on).finetune_midi_encoder
    argv = ["train", "--model-init", "tiny", "--allow-random-encoders", "--output-dir", str(tmp_path / "out")]
    refused = {
        ("--finetune-midi-encoder", "--modalities", "audio"): "poolingvq train: --finetune-midi-encoder: an "
        "audio-only model (--modalities audio) has no MIDI encoder to train",
        ("--finetune-midi-encoder", "--config-overrides", "finetune_midi_encoder=false"): "poolingvq train: "
        "--config-overrides: sets finetune_midi_encoder=False, but --finetune-midi-encoder says True",
    }
    for flags, expected in refused.items():
        assert main([*argv, "--data-dir", str(tmp_path / "no-data"), *flags]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert not (tmp_path / "out").exists()


@needs_emopia
def test_tiny_model_trains_on_real_clips_and_its_loss_falls(uninterrupted):
    output, metrics = uninterrupted
    losses = [epoch["train/loss"] for epoch in metrics["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert metrics["train_clips"] == 40 and metrics["test"]["count"] == 12
    assert 1 <= metrics["best_epoch"] <= 3
    shares = [metrics["history"][-1][f"train/rule_share/{rule}"] for rule in ("avg", "weighted", "max")]
    assert abs(sum(shares) - 1) < 1e-6
    assert 2.5 < metrics["history"][-1]["train/compression_ratio"] < 3.1
    assert json.loads((output / "metrics.json").read_text())["test"] == metrics["test"]
    reliance = metrics["test"]["modality_reliance"]
    assert set(reliance) == {"audio", "midi"} and all(0 <= value <= 1 for value in reliance.values())


def test_output_folder_is_a_documented_loadable_model(trained_on_written_clips, written_clips):
    output, metrics = trained_on_written_clips
    card = (output / "README.md").read_text()
    front_matter = yaml.safe_load(card.split("---")[1])
    # audio-classification's pipeline cannot give the model its MIDI: the card does not claim it (test_publish.py)
    assert front_matter["library_name"] == "transformers" and front_matter["pipeline_tag"] == "other"
    assert front_matter["license"] == "cc-by-nc-sa-4.0" and "datasets" not in front_matter
    results = front_matter["model-index"][0]["results"]
    reported = {(r["dataset"]["split"], m["name"]): m["value"] for r in results for m in r["metrics"]}
    assert reported[("test", "Accuracy (test)")] == round(metrics["test"]["accuracy"], 4)
    assert reported[("validation", "Macro F1 (validation)")] == round(metrics["validation"]["macro_f1"], 4)
    assert "poolingvq train" in card and "synthesized" in card
    # the tiny preset's encoders are random: metrics.json, config.json and the card say so
    random = {"kind": "random", "seed": 0}
    assert metrics["encoder_weights"] == {"audio": random, "midi": random}
    assert json.loads((output / "config.json").read_text())["encoder_weights"] == metrics["encoder_weights"]
    assert "audio - random, untrained weights (seed 0); midi - random, untrained weights (seed 0)" in card
    assert "trained with --allow-random-encoders, these are not the paper's encoders" in card
    assert metrics["accelerate"] == {
        "mixed_precision": "no",
        "num_processes": 1,
        "device": "cpu",
        "distributed_type": "NO",
    }
    classify, _ = load_pipeline(output)
    scores = classify(written_clips["test"][0]["midi_path"])
    assert abs(sum(s["score"] for s in scores) - 1) < 1e-5


def test_resuming_from_a_mid_run_checkpoint_gives_the_same_result(
    trained_on_written_clips, written_clips, tmp_path, cache_dir
):
    _, expected = trained_on_written_clips
    interrupted = tmp_path / "interrupted"
    train(written_clip_arguments(interrupted, cache_dir, epochs=3, save_model=False), written_clips)
    assert sorted(p.name for p in (interrupted / "checkpoints").iterdir()) == ["epoch_0002", "epoch_0003"]
    resumed = train(written_clip_arguments(interrupted, cache_dir, resume=True), written_clips)
    assert resumed["history"] == expected["history"]
    assert resumed["test"] == expected["test"] and resumed["best_epoch"] == expected["best_epoch"]


def test_train_push_to_hub_uploads_the_model_folder_not_its_checkpoints_or_logs(
    tmp_path, cache_dir, written_clips, monkeypatch
):
    """`train --push-to-hub`: the repo is created before training (a bad token fails early, as with
    transformers.Trainer) and the model folder goes up when training ends, without checkpoints/, logs/ or the best
    weights that stay beside it. huggingface_hub's network calls are replaced."""
    from huggingface_hub import HfApi

    from poolingvq.publish import model_files

    calls, sent = [], {}

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, (output / "checkpoints").exists()))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls.append(("upload_folder", repo_id, (output / "checkpoints").exists()))
        sent.update({path.name: path.read_bytes() for path in Path(folder_path).iterdir()})

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    output = tmp_path / "run"
    train(written_clip_arguments(output, cache_dir, epochs=1, push_to_hub="me/poolingvq-tiny"), written_clips)
    assert calls == [
        ("create_repo", "me/poolingvq-tiny", False),  # before the first checkpoint
        ("create_repo", "me/poolingvq-tiny", True),  # once more (exist_ok) as the upload starts
        ("upload_folder", "me/poolingvq-tiny", True),
    ]
    assert (output / "checkpoints").is_dir() and (output / "logs").is_dir()
    assert (output / "best_trained_weights.safetensors").is_file()
    assert sorted(sent) == model_files(output)
    assert {"config.json", "model.safetensors", "processor_config.json", "README.md", "metrics.json"} <= set(
        sent
    )
    assert not {"checkpoints", "logs", "best_trained_weights.safetensors"} & set(sent)
    card = sent["README.md"].decode()
    assert 'pipeline("music-emotion", model="me/poolingvq-tiny", trust_remote_code=True)' in card
    assert "--push-to-hub" not in card  # re-running the training command does not publish again


def test_a_pretrained_midi_encoder_replaces_the_presets(tmp_path):
    from poolingvq import MidiBertConfig, MidiBertModel

    torch.manual_seed(7)
    pretrained = MidiBertModel(MidiBertConfig(cp_embedding_size=8, hidden_size=24, num_hidden_layers=1,
                                              num_attention_heads=2, intermediate_size=48))  # fmt: skip
    pretrained.save_pretrained(tmp_path / "midibert")
    model = build_model(
        arguments(tmp_path / "out", tmp_path / "cache", midi_encoder=str(tmp_path / "midibert"))
    )
    assert model.config.midi_config.hidden_size == 24 and model.fusion.midi_projection[1].in_features == 24
    for name, tensor in pretrained.state_dict().items():
        assert torch.equal(model.midi_encoder.state_dict()[name], tensor), name
    assert not any(p.requires_grad for p in model.midi_encoder.parameters())


def test_classification_metrics_by_hand():
    metrics = classification_metrics([0, 0, 1, 2, 3, 3], [0, 1, 1, 2, 3, 0])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # per class F1: Q1 p=1/2 r=1/2 -> .5; Q2 p=1/2 r=1 -> 2/3; Q3 1; Q4 p=1 r=1/2 -> 2/3
    assert metrics["per_class_f1"] == pytest.approx({"Q1": 0.5, "Q2": 2 / 3, "Q3": 1.0, "Q4": 2 / 3})
    assert metrics["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1 + 2 / 3) / 4)
    assert metrics["confusion_matrix"][0] == [1, 1, 0, 0]


def test_model_card_of_a_log_mel_model_names_its_encoders(tmp_path):
    from poolingvq import PoolingVQConfig
    from poolingvq.provenance import pretrained, set_encoder_weights
    from poolingvq.training import write_model_card

    split = {"accuracy": 0.5, "macro_f1": 0.45, "count": 10}
    metrics = {"train_clips": 40, "best_epoch": 3, "validation": split, "test": split}
    args = arguments(tmp_path, tmp_path, model_init="offline", midi_encoder="runs/midibert-small")
    config = PoolingVQConfig.from_preset("offline")
    record = {"source": "/work/runs/midibert-small"}
    set_encoder_weights(config, midi=pretrained("MIDI-BERT", "train --midi-encoder", **record))
    write_model_card(tmp_path, args, metrics, config)
    card = (tmp_path / "README.md").read_text()
    assert "audio encoder log-mel (128 bins, hop 320)" in card
    assert "The audio encoder holds log-mel front end (no learned weights)" in card
    assert (
        "the MIDI encoder holds MIDI-BERT from `/work/runs/midibert-small` (via train --midi-encoder)" in card
    )
    assert "not the paper's encoders" not in card  # both encoders are as they should be
    assert (
        " --allow-random-encoders " in card and " --save-model" not in card
    )  # flags that exist, and only those
    assert "| test (evaluated once) | 10 | 0.500 | 0.450 |" in card


def test_modality_reliance_measures_what_swapping_an_input_changes():
    from accelerate import Accelerator

    from poolingvq import PoolingVQConfig, PoolingVQForMusicEmotion

    torch.manual_seed(0)
    model = PoolingVQForMusicEmotion(PoolingVQConfig.from_preset("tiny", fusion_readout="both")).eval()
    generator = torch.Generator().manual_seed(0)
    shared_audio = torch.randn(1, 30, 32, generator=generator).expand(4, -1, -1)  # every clip sounds the same
    batch = {
        "audio_features": shared_audio,
        "audio_features_mask": torch.ones(4, 30, dtype=torch.bool),
        "midi_features": torch.randn(4, 12, 32, generator=generator),
        "midi_features_mask": torch.ones(4, 12, dtype=torch.bool),
        "labels": torch.zeros(4, dtype=torch.long),
    }
    reliance = modality_reliance(model, [batch], Accelerator(cpu=True))
    assert reliance["audio"] == 0.0  # another clip's audio is the same audio
    with torch.no_grad():
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        p = model(**inputs).logits.softmax(-1)
        swapped = {**inputs, "midi_features": inputs["midi_features"].roll(1, 0)}
        q = model(**swapped).logits.softmax(-1)
    assert reliance["midi"] == pytest.approx(float(0.5 * (p - q).abs().sum(-1).mean()), rel=1e-5)
    assert reliance["midi"] > 0
    midi_only = PoolingVQForMusicEmotion(PoolingVQConfig.from_preset("tiny", modalities="midi"))
    assert modality_reliance(midi_only, [batch], Accelerator(cpu=True)) is None

    # a run that fine-tunes its MIDI encoder carries CP tokens: those are swapped
    tokens = torch.stack(
        [torch.randint(0, high, (4, 12), generator=generator) for high in (2, 16, 86, 64)], -1
    )
    token_batch = {
        "audio_features": torch.randn(4, 30, 32, generator=generator),
        "audio_features_mask": torch.ones(4, 30, dtype=torch.bool),
        "midi_input_ids": tokens,
        "midi_attention_mask": torch.ones(4, 12, dtype=torch.bool),
        "labels": torch.zeros(4, dtype=torch.long),
    }
    tuned = PoolingVQForMusicEmotion(PoolingVQConfig.from_preset("tiny", finetune_midi_encoder=True)).eval()
    reliance = modality_reliance(tuned, [token_batch], Accelerator(cpu=True))
    with torch.no_grad():
        inputs = {key: value for key, value in token_batch.items() if key != "labels"}
        p = tuned(**inputs).logits.softmax(-1)
        q = tuned(**{**inputs, "midi_input_ids": tokens.roll(1, 0)}).logits.softmax(-1)
    assert reliance["midi"] == pytest.approx(float(0.5 * (p - q).abs().sum(-1).mean()), rel=1e-5)
    assert reliance["midi"] > 0


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--batch-size", "0"], "poolingvq train: --batch-size: must be a whole number of at least 1, got 0"),
        (
            ["--max-train-samples", "0"],
            "poolingvq train: --max-train-samples: must be a whole number of at least 1",
        ),
        (["--epochs", "-1"], "poolingvq train: --epochs: must be a whole number of at least 1, got -1"),
        (
            ["--num-workers", "-2"],
            "poolingvq train: --num-workers: must be a whole number, 0 or more, got -2",
        ),
    ],
)
def test_train_refuses_counts_that_make_no_run(tmp_path, capsys, flags, expected):
    # Issue 11, failure 6: `train --batch-size 0` or `--max-train-samples 0` ended in a traceback.
    from poolingvq.cli import main

    argv = ["train", "--model-init", "tiny", "--allow-random-encoders", "--output-dir", str(tmp_path / "out")]
    assert main([*argv, "--data-dir", str(tmp_path / "no-data"), *flags]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert not (tmp_path / "out").exists()


def test_config_overrides_set_any_config_field_checked_against_its_type(tmp_path, capsys):
    # Issue 11: TrainingArguments copied five config fields by hand, so window_size could not be set
    from poolingvq.cli import main
    from poolingvq.training import init_config, parse_config_overrides

    assert parse_config_overrides(
        "window_size=7, codebook_size=32,audio_feature_layers=[1,2],fused_pooling=false"
    ) == {
        "window_size": 7,
        "codebook_size": 32,
        "audio_feature_layers": [1, 2],
        "fused_pooling": False,
    }
    assert parse_config_overrides(None) == {} and parse_config_overrides("audio_feature_layers=none") == {
        "audio_feature_layers": None
    }
    config = init_config(
        TrainingArguments(
            model_init="tiny", pooling="avg", config_overrides="window_size=7,window_stride=2,codebook_size=8"
        )
    )
    assert (config.window_size, config.window_stride, config.codebook_size, config.pooling) == (
        7,
        2,
        8,
        "avg",
    )
    # the explicit flags keep working, and agree with an override of the same field or are refused
    assert init_config(TrainingArguments(model_init="tiny", codebook_size=8)).codebook_size == 8
    same = TrainingArguments(model_init="tiny", codebook_size=8, config_overrides="codebook_size=8")
    assert init_config(same).codebook_size == 8

    argv = ["train", "--model-init", "tiny", "--allow-random-encoders", "--output-dir", str(tmp_path / "out")]
    refused = {
        "codebook_size=abc": "--config-overrides: codebook_size='abc': codebook_size must be int",
        "window_size=7.5": "--config-overrides: window_size='7.5': window_size must be int",
        "windowsize=7": "--config-overrides: 'windowsize' is not a PoolingVQConfig field",
        "audio_config={}": "--config-overrides: 'audio_config' is not a PoolingVQConfig field it can set",
        "window_size": "--config-overrides: 'window_size' is not key=value",
        "window_stride=9": "--config-overrides: window_stride must be in [1, window_size]: 9, 5",
        "pooling=median": "--config-overrides: pooling='median': choose one of",
    }
    for text, expected in refused.items():
        assert main([*argv, "--data-dir", str(tmp_path / "no-data"), "--config-overrides", text]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"poolingvq train: {expected}"), (text, lines)
    assert main([*argv, "--codebook-size", "16", "--config-overrides", "codebook_size=8"]) == 2
    assert "but --codebook-size says 16: give it once" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_checkpoints_are_written_whole(tmp_path):
    # Issue 11: a checkpoint is saved into a hidden sibling and renamed into place, so a run killed while saving
    # leaves the earlier checkpoints as they were; a killed run's partial checkpoint is pruned with the old ones.
    from accelerate import Accelerator

    from poolingvq.checkpoints import latest_checkpoint, prune_checkpoints, save_state_atomically

    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    folder = tmp_path / "checkpoints"
    (folder / ".epoch_0003.partial").mkdir(parents=True)  # what a run killed while saving epoch 3 left
    for epoch in (1, 2, 3):
        save_state_atomically(accelerator, folder / f"epoch_{epoch:04d}")
    prune_checkpoints(folder, keep=2)
    assert sorted(path.name for path in folder.iterdir()) == ["epoch_0002", "epoch_0003"]
    assert latest_checkpoint(folder) == folder / "epoch_0003"
    with torch.no_grad():
        model.weight.zero_()
    accelerator.load_state(str(latest_checkpoint(folder)))
    assert model.weight.abs().sum() > 0


def test_train_refuses_encoders_that_never_loaded_weights(tmp_path, capsys):
    """One line naming import-weights, before any data is read or folder written, unless --allow-random-encoders."""
    from poolingvq import PoolingVQConfig
    from poolingvq.cli import main
    from poolingvq.provenance import pretrained, set_encoder_weights
    from poolingvq.training import check_encoders_loaded, init_config
    from poolingvq.training import main as train_module_main

    def refusal(*argv: str) -> str:
        base = ["--output-dir", str(tmp_path / "out"), "--data-dir", str(tmp_path / "no-data")]
        assert main(["train", *base, *argv]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("poolingvq train: --model-init ")
        return lines[0]

    line = refusal("--model-init", "paper")
    assert (
        "the audio encoder (MERT) holds random weights and the MIDI encoder (MIDI-BERT) holds random" in line
    )
    assert "`poolingvq import-weights --mert m-a-p/MERT-v1-95M --midibert CKPT --out DIR`" in line
    assert "--allow-random-encoders" in line
    line = refusal("--model-init", "offline")  # log-mel has no weights to load; the MIDI encoder has
    assert "the MIDI encoder (MIDI-BERT) holds random weights" in line and "audio encoder" not in line
    assert "--midi-encoder" in line
    old_folder = tmp_path / "saved-before-records"
    PoolingVQConfig.from_preset("tiny").save_pretrained(old_folder)
    assert "has no record of where its weights came from" in refusal("--model-init", str(old_folder))
    # `python -m poolingvq.train` / `accelerate launch -m poolingvq.train` say it the same way
    assert train_module_main(["--model-init", "tiny", "--output-dir", str(tmp_path / "out")]) == 2
    assert "poolingvq train: --model-init tiny: " in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

    # what passes: a folder whose encoders import-weights loaded, and offline with a pre-trained MIDI encoder
    imported = PoolingVQConfig.from_preset("tiny")
    set_encoder_weights(
        imported,
        audio=pretrained("MERT", "import-weights", source="m-a-p/MERT-v1-95M", revision="0" * 40),
        midi=pretrained("MIDI-BERT", "import-weights", source="/data/midibert.ckpt"),
    )
    imported.save_pretrained(tmp_path / "imported")
    (tmp_path / "midibert").mkdir()
    for args in (
        arguments(tmp_path, tmp_path, model_init=str(tmp_path / "imported"), allow_random_encoders=False),
        arguments(
            tmp_path,
            tmp_path,
            model_init="offline",
            midi_encoder=str(tmp_path / "midibert"),
            allow_random_encoders=False,
        ),
    ):
        check_encoders_loaded(args, init_config(args))


def test_mixed_precision_comes_from_accelerate_unless_the_flag_is_given(
    tmp_path, cache_dir, written_clips, monkeypatch
):
    """ACCELERATE_MIXED_PRECISION=bf16 (what `accelerate launch --mixed_precision bf16` and `accelerate config` set)
    trains under bf16 autocast on the CPU; an explicit --mixed-precision no wins over it."""
    from accelerate.state import AcceleratorState

    import poolingvq.training as training

    head_dtypes: list[torch.dtype] = []
    build_model_as_is = training.build_model

    def build_and_watch(args):
        model = build_model_as_is(args)
        model.classifier.register_forward_hook(
            lambda module, inputs, output: head_dtypes.append(output.dtype)
        )
        return model

    monkeypatch.setattr(training, "build_model", build_and_watch)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    small = {"max_train_samples": 8, "max_eval_samples": 4, "epochs": 1, "save_model": False}

    def run(output: Path, **overrides) -> dict:
        return train(written_clip_arguments(output, cache_dir, **small, **overrides), written_clips)

    AcceleratorState._reset_state(reset_partial_state=True)  # Accelerate's state is per process: start afresh
    try:
        metrics = run(tmp_path / "from-env")
        assert metrics["accelerate"]["mixed_precision"] == "bf16"
        assert head_dtypes and set(head_dtypes) == {torch.bfloat16}  # the head ran under bf16 autocast
        assert metrics["arguments"]["mixed_precision"] is None

        head_dtypes.clear()
        AcceleratorState._reset_state(reset_partial_state=True)
        metrics = run(tmp_path / "flag", mixed_precision="no")
        assert metrics["accelerate"]["mixed_precision"] == "no"
        assert head_dtypes and set(head_dtypes) == {torch.float32}
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
