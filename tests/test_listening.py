"""What the default model needs to hear (issue 10), part by part, on tiny models and synthetic pieces:
absolute loudness, chroma, key profiles and onsets in the front end; synthesis at the performance's level;
feature standardization; modality dropout (audio alone, MIDI alone); the pipeline taking audio alone; the cue
variants of `poolingvq.listening`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import symusic
import torch

from poolingvq import PoolingVQConfig, PoolingVQForMusicEmotion, PoolingVQProcessor
from poolingvq.configuration_poolingvq import LogMelConfig
from poolingvq.examples import write_example_midi
from poolingvq.listening import cue_responses, transposed, with_tempo, with_velocity
from poolingvq.logmel_poolingvq import LogMelEncoder
from poolingvq.modeling_poolingvq import FeatureStandardization
from poolingvq.predict import load_pipeline
from poolingvq.synthesis_poolingvq import synthesize_midi
from poolingvq.tokenization_poolingvq import load_score

RATE = 24000


def chords(root: int = 60, minor: bool = False, velocity: int = 80, per_beat: int = 1, beats: int = 8):
    """A score of repeated triads (+ octave), `per_beat` strikes a beat at 120 bpm."""
    score = symusic.Score(480)
    track = symusic.Track(program=0)
    step = 480 // per_beat
    for index in range(beats * per_beat):
        for pitch in (root, root + (3 if minor else 4), root + 7, root + 12):
            track.notes.append(symusic.Note(index * step, step, pitch, velocity))
    score.tracks.append(track)
    return score


def encoder(**fields) -> LogMelEncoder:
    return LogMelEncoder(LogMelConfig(**fields))


def features(front_end: LogMelEncoder, waveform: np.ndarray) -> torch.Tensor:
    return front_end(torch.tensor(waveform)[None]).last_hidden_state[0]


# --- front end -------------------------------------------------------------------------------------------------------


def test_absolute_level_keeps_loudness_and_the_normalising_processor_removed_it() -> None:
    tone = synthesize_midi(chords(), level="velocity")
    louder = 4.0 * tone  # +12 dB: log10(4) / 4 = 0.15 higher wherever the frame is above the floor
    absolute = PoolingVQProcessor.for_model(PoolingVQConfig.from_preset("offline"))
    front_end = encoder(level="absolute")
    loud_frames = features(
        front_end, absolute.feature_extractor(louder, sampling_rate=RATE)["input_values"][0]
    )
    frames = features(front_end, absolute.feature_extractor(tone, sampling_rate=RATE)["input_values"][0])
    assert loud_frames.mean() > frames.mean() + 0.1
    # issue 7's processor normalised every waveform to unit variance: both clips gave the same frames
    normalising = PoolingVQProcessor.for_model(PoolingVQConfig.from_preset("tiny")).feature_extractor
    first, second = (normalising(x, sampling_rate=RATE)["input_values"][0] for x in (louder, tone))
    assert np.allclose(first, second, atol=1e-4)


def test_chroma_peaks_at_the_played_pitch_class_and_sizes_add_up() -> None:
    front_end = encoder(level="absolute", num_chroma_bins=12, onset_strength=True, key_profile_seconds=2.0)
    assert front_end.config.hidden_size == 128 + 12 + 1 + 2
    t = np.arange(RATE) / RATE
    a440 = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    frames = features(front_end, a440)
    assert frames.shape == (RATE // 320 + 1, 143)
    chroma = frames[10:-10, 128:140].mean(0)
    assert int(chroma.argmax()) == 9  # A (chroma starts at C)


def test_key_profiles_tell_major_from_minor_in_any_key() -> None:
    front_end = encoder(level="absolute", num_chroma_bins=12, key_profile_seconds=3.0)
    for root in (60, 62, 65):
        major = features(front_end, synthesize_midi(chords(root), level="velocity"))[60:240, 140:142].mean(0)
        minor = features(front_end, synthesize_midi(chords(root, True), level="velocity"))[
            60:240, 140:142
        ].mean(0)
        # best-major minus best-minor correlation is higher for the major chords
        assert major[0] - major[1] > minor[0] - minor[1], root


def test_key_relative_chroma_is_the_same_in_any_key() -> None:
    """`chroma_reference="key"`: scale degrees. The same chords a tone or a fourth higher give the same degrees,
    where the absolute chroma is rolled by 2 or 5 bins."""
    absolute = encoder(level="absolute", num_chroma_bins=12, key_profile_seconds=3.0)
    relative = encoder(level="absolute", num_chroma_bins=12, key_profile_seconds=3.0, chroma_reference="key")
    relative.load_state_dict(absolute.state_dict())
    original = synthesize_midi(chords(60), level="velocity")
    for shift in (2, 5):
        moved = synthesize_midi(chords(60 + shift), level="velocity")
        plain = [features(absolute, clip)[60:240, 128:140].mean(0) for clip in (original, moved)]
        degrees = [features(relative, clip)[60:240, 128:140].mean(0) for clip in (original, moved)]
        assert int(plain[1].argmax()) == (int(plain[0].argmax()) + shift) % 12  # rolled with the music
        # the piano's timbre differs a little by register, so "the same" is: far closer than the absolute bins
        assert (degrees[0] - degrees[1]).norm() < 0.3 * (plain[0] - plain[1]).norm(), shift
        assert (
            int(degrees[0].argmax()) == int(degrees[1].argmax()) == 0
        )  # C major chords: the tonic is loudest
    with pytest.raises(ValueError, match="needs the key"):
        encoder(num_chroma_bins=12, chroma_reference="key")


def test_onset_strength_counts_notes() -> None:
    front_end = encoder(level="absolute", onset_strength=True)
    sparse = features(front_end, synthesize_midi(chords(per_beat=1), level="velocity"))[:, -1].mean()
    dense = features(front_end, synthesize_midi(chords(per_beat=4), level="velocity"))[:, -1].mean()
    assert dense > 1.5 * sparse


def test_front_end_buffers_save_and_load_with_safetensors(tmp_path: Path) -> None:
    """A training checkpoint (`accelerator.save_state` / `load_state`) goes through safetensors, which refuses a
    tensor that covers only part of its storage: `torch.hann_window(n)` is such a view, so `--resume` of a run on
    this front end failed before the windows were cloned."""
    from safetensors.torch import load_model, save_model

    config = LogMelConfig(num_chroma_bins=12, chroma_n_fft=4096)
    encoder = LogMelEncoder(config)
    save_model(encoder, str(tmp_path / "front_end.safetensors"))
    loaded = LogMelEncoder(config)
    assert load_model(loaded, str(tmp_path / "front_end.safetensors")) == (set(), [])
    assert torch.equal(loaded.window, torch.hann_window(config.n_fft))


def test_front_end_batches_like_single_clips() -> None:
    front_end = encoder(level="absolute", num_chroma_bins=12, onset_strength=True, key_profile_seconds=2.0)
    short = synthesize_midi(chords(beats=4), level="velocity")
    long = synthesize_midi(chords(beats=8, minor=True), level="velocity")
    batch = torch.zeros(2, len(long))
    batch[0, : len(short)], batch[1] = torch.tensor(short), torch.tensor(long)
    mask = torch.zeros(2, len(long), dtype=torch.long)
    mask[0, : len(short)], mask[1] = 1, 1
    together = front_end(batch, attention_mask=mask).last_hidden_state
    frames = len(short) // 320 + 1
    # the key window reaches into the padding near the end of the short clip: compare away from it
    assert torch.allclose(together[0, : frames - 80], features(front_end, short)[: frames - 80], atol=1e-4)
    assert torch.allclose(together[1], features(front_end, long), atol=1e-4)


# --- synthesis at the performance's level ----------------------------------------------------------------------------


def rms_db(waveform: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(waveform, dtype=np.float64)))))


def test_velocity_level_keeps_dynamics_and_peak_level_does_not() -> None:
    soft, loud = chords(velocity=45), chords(velocity=110)
    assert (
        rms_db(synthesize_midi(loud, level="velocity")) > rms_db(synthesize_midi(soft, level="velocity")) + 3
    )
    assert abs(np.abs(synthesize_midi(loud)).max() - np.abs(synthesize_midi(soft)).max()) < 1e-4
    with pytest.raises(ValueError, match="level"):
        synthesize_midi(soft, level="loud")


def test_processor_for_an_absolute_front_end_leaves_the_level_alone() -> None:
    processor = PoolingVQProcessor.for_model(PoolingVQConfig.from_preset("offline"))
    assert processor.feature_extractor.do_normalize is False and processor.synthesis_level == "velocity"
    paper = PoolingVQProcessor.for_model(PoolingVQConfig.from_preset("tiny"))
    assert paper.feature_extractor.do_normalize is True and paper.synthesis_level == "peak"


# --- fusion: standardization and modality dropout ---------------------------------------------------------------------


def test_feature_standardization_fits_mean_and_spread() -> None:
    generator = torch.Generator().manual_seed(0)
    blocks = [torch.randn(50, 3, generator=generator) * torch.tensor([1.0, 2.0, 3.0]) + 5 for _ in range(4)]
    standardization = FeatureStandardization(3)
    assert standardization.fit(iter(blocks)) == 200
    everything = torch.cat(blocks)
    assert torch.allclose(standardization.mean, everything.mean(0), atol=1e-5)
    assert torch.allclose(standardization.std, everything.std(0, unbiased=False), atol=1e-5)
    assert torch.allclose(standardization(everything).mean(0), torch.zeros(3), atol=1e-5)


def tiny_model(**overrides) -> PoolingVQForMusicEmotion:
    torch.manual_seed(0)
    fields = {"modality_dropout": 0.5, "fusion_readout": "both", **overrides}
    return PoolingVQForMusicEmotion(PoolingVQConfig.from_preset("tiny", **fields)).eval()


def test_a_hidden_modality_is_the_same_as_a_missing_one() -> None:
    model = tiny_model()
    audio, midi = torch.randn(3, 40, 32), torch.randn(3, 20, 32)
    audio_mask, midi_mask = torch.ones(3, 40, dtype=torch.bool), torch.ones(3, 20, dtype=torch.bool)
    hide = torch.tensor([True, False, True])
    with torch.no_grad():
        hidden = model.fusion(audio, audio_mask, midi, midi_mask, hide_audio=hide)
        missing = model.fusion(None, None, midi, midi_mask)
        both = model.fusion(audio, audio_mask, midi, midi_mask)
        hidden_midi = model.fusion(
            audio, audio_mask, midi, midi_mask, hide_midi=torch.ones(3, dtype=torch.bool)
        )
        midi_missing = model.fusion(audio, audio_mask, None, None)
    assert torch.allclose(hidden[hide], missing[hide], atol=1e-5)
    assert torch.allclose(hidden[~hide], both[~hide], atol=1e-6)
    assert torch.allclose(hidden_midi, midi_missing, atol=1e-5)


def test_modality_dropout_hides_about_its_share_and_only_in_training() -> None:
    model = tiny_model(modality_dropout=0.6)
    seen = []
    model.fusion.register_forward_hook(lambda module, args, out: seen.append(args[4:6]))
    batch = {
        "audio_features": torch.randn(400, 30, 32),
        "midi_features": torch.randn(400, 10, 32),
        "labels": torch.zeros(400, dtype=torch.long),
    }
    model.train()
    model(**batch)
    hide_audio, hide_midi = seen[-1]
    assert not (hide_audio & hide_midi).any()
    assert 0.2 < hide_audio.float().mean() < 0.4 and 0.2 < hide_midi.float().mean() < 0.4
    model.eval()
    model(**batch)
    assert seen[-1] == (None, None)
    # modality_dropout_midi_share: of the hidden pieces, the share whose MIDI is hidden
    model = tiny_model(modality_dropout=0.6, modality_dropout_midi_share=0.75).train()
    model.fusion.register_forward_hook(lambda module, args, out: seen.append(args[4:6]))
    torch.manual_seed(1)
    model(**batch)
    hide_audio, hide_midi = seen[-1]
    assert not (hide_audio & hide_midi).any()
    assert 0.08 < hide_audio.float().mean() < 0.22 and 0.36 < hide_midi.float().mean() < 0.54
    with pytest.raises(ValueError, match="modality_dropout_midi_share"):
        tiny_model(modality_dropout_midi_share=1.5)


def test_a_model_without_modality_dropout_still_needs_both() -> None:
    model = tiny_model(modality_dropout=0.0)
    with pytest.raises(ValueError, match="audio"):
        model(midi_features=torch.randn(1, 10, 32))


@pytest.fixture(scope="module")
def answering_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    config = PoolingVQConfig.from_preset(
        "tiny",
        audio_config={"model_type": "poolingvq_logmel", "level": "absolute", "num_chroma_bins": 12},
        modality_dropout=0.3,
        fusion_readout="both",
        audio_normalization="standardize",
    )
    torch.manual_seed(0)
    model = PoolingVQForMusicEmotion(config).eval()
    model.quantizer.init_codebook(torch.randn(500, config.audio_config.hidden_size), seed=0)
    model.save_pretrained(folder)
    PoolingVQProcessor.for_model(config).save_pretrained(folder)
    return folder


def test_pipeline_answers_audio_alone_and_says_what_it_heard(answering_model: Path, tmp_path: Path) -> None:
    classify, _ = load_pipeline(answering_model)
    midi = write_example_midi(tmp_path / "q4.mid", "Q4", seconds=4)
    waveform = synthesize_midi(midi, level="velocity")
    alone = classify({"raw": waveform, "sampling_rate": RATE}, return_details=True, transcribe=False)
    assert alone["heard"] == "audio only (no MIDI)" and "midi_tokens" not in alone
    assert abs(sum(item["score"] for item in alone["scores"]) - 1) < 1e-5
    from_midi = classify(str(midi), return_details=True)
    assert from_midi["heard"] == "MIDI, with audio synthesized from it"
    both = classify(
        {"audio": {"raw": waveform, "sampling_rate": RATE}, "midi": str(midi)}, return_details=True
    )
    assert both["heard"] == "audio and MIDI"
    # the synthesized audio is the velocity-level rendering: the same scores as that audio given with the MIDI
    assert [s["label"] for s in both["scores"]] == [s["label"] for s in from_midi["scores"]]
    assert np.allclose(
        [s["score"] for s in both["scores"]], [s["score"] for s in from_midi["scores"]], atol=1e-5
    )


# --- cue variants -----------------------------------------------------------------------------------------------------


def test_variants_change_one_thing_each(tmp_path: Path) -> None:
    score = load_score(write_example_midi(tmp_path / "q1.mid", "Q1", seconds=4))
    seconds = score.to("second").end()
    assert with_tempo(score, 2.0).to("second").end() == pytest.approx(seconds / 2, rel=0.02)
    notes = score.tracks[0].notes.numpy()
    louder = with_velocity(score, 30).tracks[0].notes.numpy()
    assert (louder["velocity"] == np.minimum(notes["velocity"].astype(int) + 30, 127)).all()
    assert (louder["time"] == notes["time"]).all() and (louder["pitch"] == notes["pitch"]).all()
    assert (transposed(score, 2).tracks[0].notes.numpy()["pitch"] == notes["pitch"] + 2).all()
    assert score.tracks[0].notes.numpy()["velocity"].tolist() == notes["velocity"].tolist()  # unchanged


def test_cue_responses_measure_the_direction_of_change(tmp_path: Path) -> None:
    """A stand-in classifier that hears only loudness (the mean velocity) answers louder -> Q2, softer -> Q3."""

    def classify(piece: dict) -> list[dict]:
        velocity = np.mean(
            [note.velocity for track in load_score(piece["midi"]).tracks for note in track.notes]
        )
        arousal = float(np.clip((velocity - 20) / 100, 0, 1))
        return [
            {"label": "Q2", "score": arousal},
            {"label": "Q3", "score": 1 - arousal},
            {"label": "Q1", "score": 0.0},
            {"label": "Q4", "score": 0.0},
        ]

    midis = [write_example_midi(tmp_path / f"{q}.mid", q, seconds=3) for q in ("Q1", "Q3")]
    figures = cue_responses(classify, midis)
    assert figures["pieces"] == 2
    assert (
        figures["louder"]["share_toward_expected"] == 1.0
        and figures["louder"]["mean_high_arousal_change"] > 0
    )
    assert figures["softer"]["share_toward_expected"] == 1.0
    assert figures["transposed_up"]["share_same_answer"] == 1.0
    assert (
        figures["faster"]["mean_high_arousal_change"] == 0.0
    )  # it does not hear tempo, and the figure says so
