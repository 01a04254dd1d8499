"""A recording alone -> its notes (basic-pitch) -> the MIDI path: the processor, the pipeline and `predict`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_pipeline import assert_batching_changes_nothing, save_model

from poolingvq import PoolingVQConfig, PoolingVQInputError, PoolingVQProcessor
from poolingvq.cli import main
from poolingvq.examples import write_example_midi
from poolingvq.performance_poolingvq import (
    STATISTIC_NAMES,
    UNKNOWN_FROM_TRANSCRIPTION,
    performance_statistics,
)
from poolingvq.predict import load_pipeline
from poolingvq.synthesis_poolingvq import synthesize_midi
from poolingvq.tokenization_poolingvq import load_score
from poolingvq.transcription_poolingvq import transcribe_audio, transcription_available

needs_transcriber = pytest.mark.skipif(
    not transcription_available(),
    reason="basic-pitch is not installed (bash scripts/install_transcription.sh; scripts/test.sh installs it)",
)
RATE = 24000


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> dict[str, Path]:
    """The Q1 example piece and a recording of it (TimGM6mb piano, at the performance's level)."""
    root = tmp_path_factory.mktemp("recording")
    midi = write_example_midi(root / "piece.mid", "Q1", seconds=6)
    sf.write(root / "piece.wav", synthesize_midi(midi, sample_rate=RATE, level="velocity"), RATE)
    return {"midi": midi, "wav": root / "piece.wav"}


def notes_of(midi) -> tuple[np.ndarray, np.ndarray]:
    """(onset seconds, pitch) of every note of a MIDI."""
    notes = [track.notes.numpy() for track in load_score(midi).to("second").tracks]
    return np.concatenate([n["time"] for n in notes]), np.concatenate([n["pitch"] for n in notes])


def test_a_transcription_statistics_leave_unknown_what_it_cannot_know(recording):
    known = performance_statistics(recording["midi"])
    transcribed = performance_statistics(recording["midi"], transcribed=True)
    unknown = [STATISTIC_NAMES.index(name) for name in UNKNOWN_FROM_TRANSCRIPTION]
    assert np.isnan(transcribed[unknown]).all() and not np.isnan(known).any()
    assert {"velocity_mean", "sustain_pedal_share", "log_duration_mean"} <= set(UNKNOWN_FROM_TRANSCRIPTION)
    rest = np.setdiff1d(np.arange(len(known)), unknown)
    np.testing.assert_array_equal(transcribed[rest], known[rest])


def test_a_model_trained_on_transcriptions_reads_their_statistics_as_they_are(recording, tmp_path):
    known = performance_statistics(recording["midi"])
    as_read = performance_statistics(
        recording["midi"], transcribed=True, transcribed_statistics="as_transcribed"
    )
    np.testing.assert_array_equal(as_read, known)
    with pytest.raises(ValueError, match="transcribed_statistics='guessed'"):
        performance_statistics(recording["midi"], transcribed=True, transcribed_statistics="guessed")
    with pytest.raises(ValueError, match="transcribed_statistics='guessed'"):
        PoolingVQConfig.from_preset("tiny", transcribed_statistics="guessed")
    # the model's reading travels with its processor, through save and load (old folders: "unknown")
    config = PoolingVQConfig.from_preset(
        "tiny", midi_statistics=True, transcribed_statistics="as_transcribed"
    )
    processor = PoolingVQProcessor.for_model(config)
    processor.save_pretrained(tmp_path)
    assert PoolingVQProcessor.from_pretrained(tmp_path).transcribed_statistics == "as_transcribed"
    assert (
        PoolingVQProcessor.for_model(PoolingVQConfig.from_preset("tiny")).transcribed_statistics == "unknown"
    )


@needs_transcriber
def test_a_recording_is_transcribed_to_the_notes_played(recording):
    waveform, rate = sf.read(recording["wav"], dtype="float32")
    played_onsets, played_pitches = notes_of(recording["midi"])
    heard_onsets, heard_pitches = notes_of(transcribe_audio(waveform, rate))
    # the same harmony: pitch-class histograms alike; about as many notes struck, at the same pace
    played = np.bincount(played_pitches % 12, minlength=12)
    heard = np.bincount(heard_pitches % 12, minlength=12)
    assert np.corrcoef(played, heard)[0, 1] > 0.8
    assert 0.7 < len(np.unique(heard_onsets.round(2))) / len(np.unique(played_onsets.round(2))) < 1.4
    assert abs(np.median(heard_pitches) - np.median(played_pitches)) <= 2


@needs_transcriber
def test_a_recording_without_notes_is_named():
    # the pipeline refuses silence before (`load_audio`); the transcriber itself names it too
    with pytest.raises(PoolingVQInputError, match="silence.wav: no notes could be heard"):
        transcribe_audio(np.zeros(RATE * 2, np.float32), RATE, source="silence.wav")


@needs_transcriber
def test_the_processor_transcribes_a_recording_alone(recording):
    processor = PoolingVQProcessor.for_model(PoolingVQConfig.from_preset("tiny", midi_statistics=True))
    batch = processor(audio=str(recording["wav"]), transcribe_missing_midi=True)
    midi = processor.transcribe(str(recording["wav"]))
    expected = processor(audio=str(recording["wav"]), midi=midi)
    np.testing.assert_array_equal(batch["midi_input_ids"], expected["midi_input_ids"])
    np.testing.assert_array_equal(batch["input_values"], expected["input_values"])
    unknown = [STATISTIC_NAMES.index(name) for name in UNKNOWN_FROM_TRANSCRIPTION]
    statistics = batch["midi_statistics"].numpy()[0]
    assert np.isnan(statistics[unknown]).all()
    np.testing.assert_allclose(
        np.delete(statistics, unknown), np.delete(expected["midi_statistics"].numpy()[0], unknown)
    )
    processor.transcribed_statistics = "as_transcribed"  # a model trained on transcriptions read so
    as_read = processor(audio=str(recording["wav"]), transcribe_missing_midi=True)
    np.testing.assert_allclose(as_read["midi_statistics"].numpy(), expected["midi_statistics"].numpy())


@needs_transcriber
def test_the_pipeline_transcribes_a_recording_alone_and_says_so(recording, tmp_path):
    classify, _ = load_pipeline(save_model(tmp_path / "model", midi_statistics=True, modality_dropout=0.3))
    recording_alone = {"audio": str(recording["wav"])}
    transcribed = classify(recording_alone, return_details=True)  # the default, as basic-pitch is installed
    assert transcribed["heard"].startswith("audio, with MIDI transcribed from the recording (basic-pitch")
    assert transcribed["midi_tokens"] > 0
    assert classify(recording_alone, transcribe=True) == transcribed["scores"]
    alone = classify(recording_alone, return_details=True, transcribe=False)
    assert alone["heard"] == "audio only (no MIDI)" and alone["scores"] != transcribed["scores"]
    # with a transcriber every piece has notes: recordings alone and pieces with MIDI share a batch
    inputs = [recording_alone, {"midi": str(recording["midi"])}, recording_alone]
    assert_batching_changes_nothing(classify, inputs)


@needs_transcriber
def test_models_that_need_notes_read_them_from_a_recording(recording, tmp_path):
    needs_midi, _ = load_pipeline(save_model(tmp_path / "both"))  # no modality dropout: refuses audio alone
    assert needs_midi({"audio": str(recording["wav"])}, top_k=1)[0]["label"] in {"Q1", "Q2", "Q3", "Q4"}
    with pytest.raises(PoolingVQInputError, match="a MIDI file is needed"):
        needs_midi({"audio": str(recording["wav"])}, transcribe=False)
    midi_only, _ = load_pipeline(save_model(tmp_path / "midi", modalities="midi"))
    details = midi_only(str(recording["wav"]), return_details=True)
    assert (
        details["heard"].startswith("MIDI transcribed from the recording") and "audio_frames" not in details
    )


def test_without_a_transcriber_a_recording_alone_is_heard_as_audio(recording, tmp_path, monkeypatch):
    import poolingvq.pipeline_music_emotion as pipeline_module

    monkeypatch.setattr(pipeline_module, "transcription_available", lambda: False)
    classify, _ = load_pipeline(save_model(tmp_path / "model", midi_statistics=True, modality_dropout=0.3))
    details = classify({"audio": str(recording["wav"])}, return_details=True)
    assert details["heard"] == "audio only (no MIDI)"
    with pytest.raises(ImportError, match="basic-pitch"):
        classify({"audio": str(recording["wav"])}, transcribe=True)
    with pytest.raises(ValueError, match="transcribe must be True, False or None"):
        classify({"audio": str(recording["wav"])}, transcribe="yes")


@needs_transcriber
def test_predict_transcribes_unless_told_not_to(recording, tmp_path, capsys):
    model = save_model(tmp_path / "model", midi_statistics=True, modality_dropout=0.3)
    assert main(["predict", "--model", str(model), "--audio", str(recording["wav"]), "--json"]) == 0
    assert "transcribed from the recording" in json.loads(capsys.readouterr().out)["heard"]
    arguments = [
        "predict",
        "--model",
        str(model),
        "--audio",
        str(recording["wav"]),
        "--json",
        "--no-transcription",
    ]
    assert main(arguments) == 0
    assert json.loads(capsys.readouterr().out)["heard"] == "audio only (no MIDI)"
