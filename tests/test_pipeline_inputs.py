"""Bad and odd inputs end to end: files -> pipeline("music-emotion") on a saved tiny model folder -> scores.

Every input gives either a valid prediction (four finite scores, best first, summing to 1) or a
`PoolingVQInputError` whose message names the input and the problem; never a crash, a hang or NaN scores, and
after each error the same pipeline still classifies a good input. The loaders' own tests
(test_feature_extraction.py, test_tokenization.py) check each rule on the loaders alone; test_pipeline.py
already sends a few bad inputs through the pipeline, which are not repeated here.
"""

from __future__ import annotations

import http.server
import math
import signal
import socket
import sys
import threading
import time
import tracemalloc
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import symusic
import torch

from poolingvq import (
    PoolingVQConfig,
    PoolingVQForMusicEmotion,
    PoolingVQInputError,
    PoolingVQProcessor,
    pipeline_music_emotion,
)
from poolingvq.examples import write_example_midi
from poolingvq.pipeline_music_emotion import conv_receptive_field, parse_input
from poolingvq.predict import load_pipeline

RATE = 24000  # the model's rate: a clip at this rate is not resampled
TONE_SECONDS = 2.0
FRAMES_OF_TONE = 149  # 2 s at 75 frames/s through MERT's conv stack (400-sample field, 320-sample hop)
#: A hang fails the test instead of stalling the suite; the slowest case here takes about 2 s.
SECONDS_BEFORE_A_HANG = 60


@pytest.fixture(autouse=True)
def fail_on_hang() -> Iterator[None]:
    def hung(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the pipeline ran for more than {SECONDS_BEFORE_A_HANG} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(SECONDS_BEFORE_A_HANG)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def save_tiny_model(folder: Path, **overrides: Any) -> Path:
    """A random tiny audio+midi model (or another preset variant) with its processor, saved as a model folder."""
    torch.manual_seed(0)
    config = PoolingVQConfig.from_preset("tiny", **overrides)
    model = PoolingVQForMusicEmotion(config).eval()
    with torch.no_grad():  # a k-means start, so the codes are spread like a trained model's
        model.quantizer.init_codebook(torch.randn(500, config.audio_config.hidden_size), seed=0)
    model.save_pretrained(folder)
    PoolingVQProcessor.for_model(config).save_pretrained(folder)
    return folder


def tone(rate: int, seconds: float = TONE_SECONDS) -> np.ndarray:
    """float32 [T]: a 330 Hz tone with its 3rd harmonic and a slow swell, so the encoder frames differ."""
    t = np.arange(round(seconds * rate)) / rate
    swell = 0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t)
    return (0.3 * swell * (np.sin(2 * np.pi * 330 * t) + 0.3 * np.sin(2 * np.pi * 990 * t))).astype(
        np.float32
    )


def midi_score(notes: list[tuple[int, int, int]], is_drum: bool = False) -> symusic.Score:
    """A 480-ticks-a-beat score with one track of (onset, duration, pitch) notes."""
    score = symusic.Score(480)
    track = symusic.Track("drums" if is_drum else "piano", program=0, is_drum=is_drum)
    for onset, duration, pitch in notes:
        track.notes.append(symusic.Note(onset, duration, pitch, 90))
    score.tracks.append(track)
    return score


def assert_valid_scores(scores: list[dict[str, Any]]) -> None:
    values = [s["score"] for s in scores]
    assert sorted(s["label"] for s in scores) == ["Q1", "Q2", "Q3", "Q4"]
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in values), values
    assert values == sorted(values, reverse=True)
    assert sum(values) == pytest.approx(1, abs=1e-5)


def score_values(scores: list[dict[str, Any]]) -> dict[str, float]:
    return {s["label"]: s["score"] for s in scores}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    paths = {"midi": write_example_midi(root / "piece.mid", "Q2", seconds=4), "wav": root / "tone.wav"}
    sf.write(paths["wav"], tone(RATE), RATE, subtype="PCM_16")
    return paths


@pytest.fixture(scope="module")
def classify(tmp_path_factory):
    pipe, _ = load_pipeline(save_tiny_model(tmp_path_factory.mktemp("model")))
    return pipe


@pytest.fixture(scope="module")
def reference(classify, files) -> list[dict[str, Any]]:
    """Scores of the 2 s tone (16-bit WAV at 24 kHz) with the MIDI: what the other encodings must match."""
    return classify({"audio": str(files["wav"]), "midi": str(files["midi"])})


# --- inputs that must be refused ----------------------------------------------------------------------------------


def write_bad_input(name: str, root: Path, good_midi: Path) -> tuple[Any, str, str]:
    """(pipeline input, the source its error must name, the problem it must state) for the case `name`."""
    midi = str(good_midi)
    if name == "missing audio path":
        path = str(root / "nowhere.wav")
        return {"audio": path, "midi": midi}, path, "no such file"
    if name == "missing MIDI as a bare path":
        path = str(root / "nowhere.mid")
        return path, path, "no such"
    if name == "empty audio file":
        (root / "empty.wav").write_bytes(b"")
        return {"audio": str(root / "empty.wav"), "midi": midi}, str(root / "empty.wav"), "empty"
    if name == "empty MIDI beside audio":
        (root / "empty.mid").write_bytes(b"")
        return (
            {"audio": tone(RATE), "sampling_rate": RATE, "midi": str(root / "empty.mid")},
            "empty.mid",
            "empty",
        )
    if name == "MIDI truncated mid-track beside audio":
        data = midi_score([(i * 120, 120, 60 + i % 12) for i in range(100)]).dumps_midi()
        (root / "cut.mid").write_bytes(data[: len(data) // 2])
        return (
            {"audio": tone(RATE), "sampling_rate": RATE, "midi": str(root / "cut.mid")},
            "cut.mid",
            "truncated",
        )
    if name == "MIDI with no notes":
        midi_score([]).dump_midi(str(root / "no_notes.mid"))
        return {"midi": str(root / "no_notes.mid")}, "no_notes.mid", "no notes"
    if name == "MIDI with no notes beside audio":
        midi_score([]).dump_midi(str(root / "no_notes.mid"))
        return (
            {"audio": tone(RATE), "sampling_rate": RATE, "midi": str(root / "no_notes.mid")},
            "no_notes.mid",
            "no notes",
        )
    if name == "drum-only MIDI beside audio":
        midi_score([(i * 240, 60, 36 + i % 10) for i in range(16)], is_drum=True).dump_midi(
            str(root / "drums.mid")
        )
        return (
            {"audio": tone(RATE), "sampling_rate": RATE, "midi": str(root / "drums.mid")},
            "drums.mid",
            "drum",
        )
    if name == "zero-length audio file":
        sf.write(root / "zero.wav", np.zeros(0, np.float32), RATE)
        return {"audio": str(root / "zero.wav"), "midi": midi}, "zero.wav", "zero length"
    if name == "audio shorter than one encoder frame":
        return {"audio": tone(RATE)[:399], "sampling_rate": RATE, "midi": midi}, "ndarray", "too short"
    if name == "MIDI whose only note renders shorter than one frame":
        midi_score([(0, 5, 60)]).dump_midi(str(root / "blip.mid"))
        return {"midi": str(root / "blip.mid")}, "blip.mid", "too short"
    if name in ("NaN in a float WAV", "infinity in a float WAV"):
        samples = tone(RATE)
        samples[1000] = np.nan if name.startswith("NaN") else -np.inf
        sf.write(root / "broken.wav", samples, RATE, subtype="FLOAT")
        return {"audio": str(root / "broken.wav"), "midi": midi}, "broken.wav", "NaN or infinite"
    if name == "infinity in a torch tensor":
        samples = torch.from_numpy(tone(16000))
        samples[5] = torch.inf
        return {"audio": samples, "sampling_rate": 16000, "midi": midi}, "Tensor", "NaN or infinite"
    if name == "array without its sampling rate":
        return {"audio": tone(RATE), "midi": midi}, "ndarray", "needs its sampling_rate"
    if name == "bytes that are not audio":
        text = b"not audio, just text\n" * 20
        return {"audio": text, "midi": midi}, f"<{len(text)} bytes>", "not audio"
    if name == "audio dict without its sampling rate":
        return {"audio": {"array": tone(RATE)}, "midi": midi}, "ndarray", "needs its 'sampling_rate'"
    if name == "audio dict with unknown keys":
        return {"audio": {"samples": tone(RATE), "rate": RATE}, "midi": midi}, "<dict>", "['rate', 'samples']"
    if name == "two sampling rates that disagree":
        inputs = {"audio": {"raw": tone(RATE), "sampling_rate": RATE}, "sampling_rate": 16000, "midi": midi}
        return inputs, "ndarray", "two sampling rates: 24000 in the audio dict and 16000 beside it"
    if name == "datasets Audio value with neither path nor bytes":
        return {"audio": {"path": None, "bytes": None}, "midi": midi}, "<dict>", "both empty"
    if name == "datasets Audio value with a missing path":
        path = str(root / "nowhere.flac")
        return {"audio": {"path": path, "bytes": None}, "midi": midi}, path, "no such file"
    if name == "URL nobody answers":
        with socket.socket() as closed:  # a port that was free a moment ago: the connection is refused
            closed.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{closed.getsockname()[1]}/song.wav"
        return {"audio": url, "midi": midi}, url, "the download failed"
    if name == "unknown key beside audio and midi":
        return {"audio": tone(RATE), "sampling_rate": RATE, "midi": midi, "rate": 1}, "<dict>", "unknown keys"
    raise AssertionError(name)


BAD_INPUTS = [
    "missing audio path",
    "missing MIDI as a bare path",
    "empty audio file",
    "empty MIDI beside audio",
    "MIDI truncated mid-track beside audio",
    "MIDI with no notes",
    "MIDI with no notes beside audio",
    "drum-only MIDI beside audio",
    "zero-length audio file",
    "audio shorter than one encoder frame",
    "MIDI whose only note renders shorter than one frame",
    "NaN in a float WAV",
    "infinity in a float WAV",
    "infinity in a torch tensor",
    "array without its sampling rate",
    "bytes that are not audio",
    "audio dict without its sampling rate",
    "audio dict with unknown keys",
    "two sampling rates that disagree",
    "datasets Audio value with neither path nor bytes",
    "datasets Audio value with a missing path",
    "URL nobody answers",
    "unknown key beside audio and midi",
]


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_is_named_and_the_pipeline_keeps_working(name, classify, files, reference, tmp_path):
    inputs, source, problem = write_bad_input(name, tmp_path, files["midi"])
    with pytest.raises(PoolingVQInputError) as caught:
        classify(inputs)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert source in message and problem in message, message
    assert classify({"audio": str(files["wav"]), "midi": str(files["midi"])}) == reference


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_bad_file_in_a_batch_is_named(batch_size, classify, files, reference, tmp_path):
    good = {"audio": str(files["wav"]), "midi": str(files["midi"])}
    samples = tone(RATE)
    samples[7] = np.nan
    sf.write(tmp_path / "nan.wav", samples, RATE, subtype="FLOAT")
    with pytest.raises(PoolingVQInputError, match="nan.wav: the audio contains NaN"):
        classify([good, {"audio": str(tmp_path / "nan.wav"), "midi": str(files["midi"])}, good], batch_size=2)
    for scores in classify([good, good], batch_size=batch_size):  # padded batches: equal to float rounding
        assert [s["label"] for s in scores] == [s["label"] for s in reference]
        assert [s["score"] for s in scores] == pytest.approx([s["score"] for s in reference], abs=1e-6)


# --- encodings of the same sound: all valid, all close to the 16-bit WAV at 24 kHz -------------------------------

#: (file name, sampling rate, soundfile keyword arguments, channels, score tolerance against the reference)
ENCODINGS = [
    ("pcm_u8.wav", RATE, {"subtype": "PCM_U8"}, 1, 0.01),
    ("pcm_24.wav", RATE, {"subtype": "PCM_24"}, 1, 1e-4),
    ("float.wav", RATE, {"subtype": "FLOAT"}, 1, 1e-4),
    ("six_channels.wav", RATE, {"subtype": "FLOAT"}, 6, 1e-4),
    ("rate_8k.wav", 8000, {"subtype": "PCM_16"}, 1, 0.01),
    ("rate_96k.wav", 96000, {"subtype": "PCM_16"}, 1, 0.01),
    ("lossless.flac", RATE, {"format": "FLAC"}, 1, 1e-4),
    ("vorbis.ogg", RATE, {"format": "OGG", "subtype": "VORBIS"}, 1, 0.02),
    ("lossy.mp3", RATE, {"format": "MP3"}, 1, 0.02),
]


@pytest.mark.parametrize(
    ("name", "rate", "options", "channels", "tolerance"), ENCODINGS, ids=[e[0] for e in ENCODINGS]
)
def test_encodings_rates_and_channels_give_the_same_prediction(
    name, rate, options, channels, tolerance, classify, files, reference, tmp_path
):
    if options.get("format") == "MP3" and "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    samples = tone(rate)
    sf.write(tmp_path / name, np.repeat(samples[:, None], channels, axis=1), rate, **options)
    details = classify({"audio": str(tmp_path / name), "midi": str(files["midi"])}, return_details=True)
    assert_valid_scores(details["scores"])
    # resampled to 24 kHz: the same number of encoder frames (an MP3 encoder adds a few ms of padding)
    assert abs(details["audio_frames"] - FRAMES_OF_TONE) <= (5 if name.endswith(".mp3") else 0)
    expected = score_values(reference)
    for label, value in score_values(details["scores"]).items():
        assert value == pytest.approx(expected[label], abs=tolerance), (label, value, expected[label])


def test_in_memory_audio_and_midi_give_the_same_prediction_as_files(classify, files, tmp_path):
    samples = tone(RATE)
    sf.write(tmp_path / "float.wav", samples, RATE, subtype="FLOAT")  # float32 samples, stored exactly
    from_file = classify({"audio": tmp_path / "float.wav", "midi": files["midi"]})  # os.PathLike inputs
    assert_valid_scores(from_file)
    midi_bytes = files["midi"].read_bytes()
    same_inputs = [
        {"audio": (tmp_path / "float.wav").read_bytes(), "midi": str(files["midi"])},
        {"audio": samples, "sampling_rate": RATE, "midi": str(files["midi"])},
        {"audio": torch.from_numpy(samples), "sampling_rate": RATE, "midi": midi_bytes},
        {"audio": torch.from_numpy(np.stack([samples, samples])), "sampling_rate": RATE, "midi": midi_bytes},
    ]
    for inputs in same_inputs:
        assert classify(inputs) == from_file
    at_16k = classify({"audio": torch.from_numpy(tone(16000)), "sampling_rate": 16000, "midi": midi_bytes})
    assert_valid_scores(at_16k)
    for label, value in score_values(at_16k).items():
        assert value == pytest.approx(score_values(from_file)[label], abs=0.01)
    assert classify({"midi": midi_bytes}) == classify(str(files["midi"]))  # synthesized from bytes or a path


# --- the inputs of transformers' audio-classification pipeline, and URLs -----------------------------------------


class Server(http.server.SimpleHTTPRequestHandler):
    """Serves a folder, plus `/slow` (answers after 2 s) and `/unsized.wav` (a body with no Content-Length)."""

    def log_message(self, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(2)
            try:  # the client has given up by now
                self.send_error(503)
            except OSError:
                pass
            return
        if self.path == "/unsized.wav":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"\0" * 5000)
            return
        super().do_GET()


@pytest.fixture(scope="module")
def server(files) -> Iterator[str]:
    """`http://127.0.0.1:PORT` serving the test files' folder, for as long as the module's tests run."""
    folder = str(files["wav"].parent)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *args: Server(*args, directory=folder))
    httpd.daemon_threads = False  # server_close waits for the requests still being answered (/slow)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_audio_classification_inputs_give_the_same_prediction(classify, files, reference, server):
    """Every audio form transformers' audio-classification pipeline takes, as the audio beside the MIDI."""
    samples, _ = sf.read(files["wav"], dtype="float32")
    wav_bytes = files["wav"].read_bytes()
    midi = str(files["midi"])
    forms = {
        "raw dict": {"raw": samples, "sampling_rate": RATE},
        "array dict (a decoded datasets Audio value)": {
            "array": samples,
            "sampling_rate": RATE,
            "path": "x.wav",
        },
        "tensor in an array dict": {"array": torch.from_numpy(samples), "sampling_rate": RATE},
        "undecoded datasets Audio value with bytes": {"path": "elsewhere/tone.wav", "bytes": wav_bytes},
        "undecoded datasets Audio value with a path": {"path": str(files["wav"]), "bytes": None},
        "URL": f"{server}/{files['wav'].name}",
        "bytes": wav_bytes,
    }
    for name, audio in forms.items():
        assert classify({"audio": audio, "midi": midi}) == reference, name
    # the MIDI by URL as well, bare (a MIDI by its suffix, the query aside) or beside the audio
    midi_url = f"{server}/{files['midi'].name}?version=1"
    assert classify(midi_url) == classify(midi)
    assert classify({"audio": f"{server}/{files['wav'].name}", "midi": midi_url}) == reference


def test_bare_audio_inputs_read_like_audio_classification(files, tmp_path_factory, server, monkeypatch):
    """Audio alone, in each top-level form, on a model trained on audio alone: a bare array is at the model's rate."""
    audio_only, _ = load_pipeline(save_tiny_model(tmp_path_factory.mktemp("audio_only"), modalities="audio"))
    samples, _ = sf.read(files["wav"], dtype="float32")
    expected = audio_only(str(files["wav"]))
    assert_valid_scores(expected)

    class AudioDecoder:  # what datasets' Audio feature decodes to with torchcodec (not installed here)
        def get_all_samples(self) -> Any:
            return types.SimpleNamespace(data=torch.from_numpy(samples[None]), sample_rate=RATE)

    fake_torchcodec = types.SimpleNamespace(decoders=types.SimpleNamespace(AudioDecoder=AudioDecoder))
    monkeypatch.setitem(sys.modules, "torchcodec", fake_torchcodec)
    forms = {
        "path": files["wav"],
        "bytes": files["wav"].read_bytes(),
        "numpy array at the processor's rate": samples,
        "torch tensor at the processor's rate": torch.from_numpy(samples),
        "raw dict": {"raw": samples, "sampling_rate": RATE},
        "array dict": {"array": samples, "sampling_rate": RATE},
        "undecoded datasets Audio value": {"path": None, "bytes": files["wav"].read_bytes()},
        "torchcodec AudioDecoder": AudioDecoder(),
        "URL": f"{server}/{files['wav'].name}",
    }
    for name, audio in forms.items():
        assert audio_only(audio) == expected, name
    for scores in audio_only(list(forms.values()), batch_size=3):  # batched: equal to float rounding
        assert score_values(scores) == pytest.approx(score_values(expected), abs=1e-6)


def test_parse_input_tells_pieces_audio_and_midi_apart():
    samples = tone(RATE)
    assert parse_input(samples, 16000)[::2] == (samples, 16000)  # a bare array: the model's rate
    audio, midi, rate = parse_input(
        {"audio": {"raw": samples, "sampling_rate": 8000}, "midi": "a.mid"}, 16000
    )
    assert audio is samples and midi == "a.mid" and rate == 8000
    assert parse_input("piece.MIDI", 16000) == (None, "piece.MIDI", None)
    assert parse_input(Path("song.wav"), 16000) == (Path("song.wav"), None, None)
    assert parse_input({"midi": b"MThd"}, 16000) == (None, b"MThd", None)


@pytest.mark.parametrize(
    ("path", "settings", "problem"),
    [
        ("/nowhere.wav", {}, "HTTP 404"),
        ("/tone.wav", {"MAX_DOWNLOAD_BYTES": 1000}, "over the 1000-byte limit"),  # said by its Content-Length
        ("/unsized.wav", {"MAX_DOWNLOAD_BYTES": 1000}, "over the 1000-byte limit"),  # found while reading
        ("/slow", {"DOWNLOAD_TIMEOUT_SECONDS": 0.3}, "timed out"),
    ],
)
def test_a_url_that_cannot_be_used_is_named(
    path, settings, problem, classify, files, reference, server, monkeypatch
):
    for name, value in settings.items():
        monkeypatch.setattr(pipeline_music_emotion, name, value)
    url = server + path
    with pytest.raises(PoolingVQInputError) as caught:
        classify({"audio": url, "midi": str(files["midi"])})
    assert str(caught.value).startswith(f"{url}: the download") and problem in str(caught.value)
    assert classify({"audio": str(files["wav"]), "midi": str(files["midi"])}) == reference


def test_downloaded_bytes_that_are_not_audio_name_their_url(classify, files, server):
    url = f"{server}/{files['midi'].name}#not-audio"  # a MIDI file where audio is expected
    with pytest.raises(PoolingVQInputError, match=f"^{url}: not audio"):
        classify({"audio": url, "midi": str(files["midi"])})


def test_an_unknown_keyword_raises_instead_of_being_ignored(classify, files, tmp_path_factory):
    with pytest.raises(TypeError, match="unknown argument\\(s\\) topk .* top_k"):
        classify(str(files["midi"]), topk=1)
    with pytest.raises(TypeError, match="topk"):
        load_pipeline(save_tiny_model(tmp_path_factory.mktemp("model")), topk=1)
    assert len(classify(str(files["midi"]), top_k=1)) == 1


# --- size: a one-hour file and a 100,000-note MIDI ----------------------------------------------------------------


def write_minutes(path: Path, minutes: int, rate: int = 8000) -> Path:
    """An 8 kHz 16-bit mono WAV of `minutes` of a one-minute tone, written a minute at a time (cheap)."""
    minute = np.round(tone(rate, seconds=60) * 32767).astype(np.int16)
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as file:
        for _ in range(minutes):
            file.write(minute)
    return path


def traced_peak_bytes(function) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_one_hour_file_costs_what_its_first_minute_costs(classify, files, tmp_path):
    one_hour = write_minutes(tmp_path / "one_hour.wav", 60)  # 57.6 MB on disk
    first_minute = write_minutes(tmp_path / "first_minute.wav", 1)
    hour_details, hour_peak = traced_peak_bytes(
        lambda: classify({"audio": str(one_hour), "midi": str(files["midi"])}, return_details=True)
    )
    minute_details, minute_peak = traced_peak_bytes(
        lambda: classify({"audio": str(first_minute), "midi": str(files["midi"])}, return_details=True)
    )
    # only the first 60 s are read: the prediction is the first minute's
    assert hour_details == minute_details and hour_details["audio_frames"] == 60 * 75 - 1
    assert_valid_scores(hour_details["scores"])
    # numpy's buffers (decoding, resampling, normalising) are traced; decoding the hour alone would take
    # 115 MB at its own 8 kHz and 346 MB at the model's 24 kHz, the first minute's work takes about 60 MB
    decoded_hour_bytes = 3600 * RATE * np.dtype(np.float32).itemsize
    assert hour_peak <= 1.1 * minute_peak + 1e6, (
        f"hour {hour_peak / 1e6:.1f} MB, minute {minute_peak / 1e6:.1f} MB"
    )
    assert hour_peak < decoded_hour_bytes / 4, f"peak {hour_peak / 1e6:.1f} MB"


def test_100k_note_midi_finishes(classify, files, tmp_path):
    rng = np.random.default_rng(0)
    count = 100_000
    track = symusic.Track("piano")
    track.notes = symusic.Note.from_numpy(
        np.sort(rng.integers(0, count * 20, count)).astype(np.int32),  # ~50 notes a second, ~35 minutes
        rng.integers(1, 2000, count).astype(np.int32),
        rng.integers(22, 108, count).astype(np.int8),
        np.full(count, 80, dtype=np.int8),
    )
    score = symusic.Score(480)
    score.tracks.append(track)
    score.dump_midi(str(tmp_path / "dense.mid"))
    with_audio = classify(
        {"audio": str(files["wav"]), "midi": str(tmp_path / "dense.mid")}, return_details=True
    )
    midi_only = classify(
        str(tmp_path / "dense.mid"), return_details=True
    )  # audio synthesized: its first 60 s
    for details in (with_audio, midi_only):
        assert_valid_scores(details["scores"])
        assert details["midi_tokens"] == 512  # one row: the piece's start
    assert midi_only["audio_frames"] == 60 * 75 - 1


def test_receptive_field_of_mert_is_400_samples():
    config = PoolingVQConfig.from_preset("paper").audio_config
    assert conv_receptive_field(config.conv_kernel, config.conv_stride) == 400
    assert conv_receptive_field([3, 3], [2, 2]) == 1 + 2 + 2 * 2


def test_a_log_mel_model_names_audio_shorter_than_one_hop(tmp_path):
    torch.manual_seed(0)
    config = PoolingVQConfig.from_preset("tiny", audio_config={"model_type": "poolingvq_logmel"})
    model = PoolingVQForMusicEmotion(config).eval()
    model.save_pretrained(tmp_path / "logmel")
    PoolingVQProcessor.for_model(config).save_pretrained(tmp_path / "logmel")
    classify, _ = load_pipeline(tmp_path / "logmel")
    midi = write_example_midi(tmp_path / "piece.mid", "Q2", seconds=4)
    with pytest.raises(PoolingVQInputError, match="too short: 319 samples.*at least 320"):
        classify({"audio": tone(RATE)[:319], "sampling_rate": RATE, "midi": str(midi)})
    scores = classify(
        {"audio": tone(RATE), "sampling_rate": RATE, "midi": str(midi)}
    )  # and it goes on working
    assert abs(sum(s["score"] for s in scores) - 1) < 1e-5
