"""`poolingvq demo`: the browser demo that shows what PoolingVQ hears. The Hugging Face Space (the `app.py` that
`poolingvq export-space` writes) runs this same app, so the page a visitor meets and the one `poolingvq demo`
launches cannot drift apart.

For one piece (an audio file and/or a MIDI file) the page shows the four quadrants with their scores, the
expected point on the valence-arousal plane, a figure in the spirit of the paper's Fig. 2 (the code of every
audio frame, the rule that pooled every window, the length before and after pooling) and a piano roll.

Everything the page computes is a plain function here (`predict_for_demo` and the three figure builders), so it is
tested without a browser; `build_demo` only wires those functions to Gradio components.

Bad uploads never take the server down: a file the package refuses (`PoolingVQInputError`, a `ValueError`) becomes
a `gr.Error` with the file's name and problem; anything else becomes a `gr.Error` that says it is a bug. What "too
big" and "too long" mean: uploads over `MAX_UPLOAD_SIZE` are refused by Gradio before the model sees them, and
only the first `max_audio_seconds` (60 s, the paper's crop) of a longer piece is analysed, which the page says.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .configuration_poolingvq import QUADRANT_LABELS, QUADRANT_MEANINGS
from .errors_poolingvq import PoolingVQInputError
from .examples import write_example_midi
from .predict import embedded_model_dir, load_pipeline
from .quantization_poolingvq import POOLING_RULES
from .tokenization_poolingvq import MIDI_SUFFIXES, load_score

logger = logging.getLogger(__name__)

#: Largest upload Gradio accepts: a 3-minute 44.1 kHz stereo WAV (~32 MB). Only the first 60 s are analysed, but
#: people upload whole songs; anything bigger is refused before it reaches the model.
MAX_UPLOAD_SIZE = "32mb"
#: Requests waiting at most; beyond that a visitor is told the queue is full instead of waiting for minutes.
MAX_QUEUE_SIZE = 16
#: Uploads (and the files Gradio writes for outputs) are deleted an hour after they were made, checked every ten
#: minutes, and all of them when the server stops: a Space that runs for weeks must not fill its disk.
DELETE_CACHE = (600, 3600)

#: The name the model dropdown shows for the default model (the embedded one, else the untrained tiny one).
DEFAULT_MODEL_CHOICE = "default"
MIDI_FILE_TYPES = list(MIDI_SUFFIXES)

#: The names and colours the figure gives the quantizer's three pooling rules (POOLING_RULES).
RULE_NAMES = {"avg": "average", "weighted": "weighted average", "max": "max"}
RULE_COLOURS = {"avg": "#4C72B0", "weighted": "#DD8452", "max": "#C44E52"}

#: Sign of each quadrant on the valence and arousal axes, in QUADRANT_LABELS order (Q1..Q4).
VALENCE_SIGNS = np.array([1.0, -1.0, -1.0, 1.0])
AROUSAL_SIGNS = np.array([1.0, 1.0, -1.0, -1.0])
QUADRANT_CORNERS = {"Q1": (0.5, 0.5), "Q2": (-0.5, 0.5), "Q3": (-0.5, -0.5), "Q4": (0.5, -0.5)}


def short_meaning(quadrant: str) -> str:
    """'Q1' -> 'happy / excited' (the meaning without its valence/arousal signs)."""
    return QUADRANT_MEANINGS.get(quadrant, "").split(" (")[0]


def quadrant_display_name(quadrant: str) -> str:
    """'Q1' -> 'Q1: happy / excited', the key `gr.Label` shows."""
    meaning = short_meaning(quadrant)
    return f"{quadrant}: {meaning}" if meaning else quadrant


# ----------------------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class DemoModel:
    """A loaded pipeline and what the page says about it.

    The page names a model and links its card; it never shows where the model lies on the server's disk (a
    visitor cannot use that path, and it tells them about the server).
    """

    pipeline: Any
    description: str
    untrained: bool
    #: what the page calls the model: its Hub id, its folder's name, or the embedded model's name
    name: str = ""
    #: the model's card on the Hub (its repo, or the file in this Space's repo), when there is one
    card_url: str | None = None
    #: the card's Markdown without its YAML header, shown on the page when the model has a card
    card: str | None = None
    #: one line of what the model is, for the page (the embedded model's scores, or UNTRAINED)
    summary: str = ""


_models: dict[str | None, DemoModel] = {}
_models_lock = threading.Lock()


def get_model(model: str | None = None) -> DemoModel:
    """The pipeline on `model` (a folder or Hub id; None: the embedded model, else an UNTRAINED tiny model).

    Loaded once per model and kept: the first request pays the loading time, the next ones do not.
    """
    with _models_lock:
        if model not in _models:
            pipeline, description = load_pipeline(model)
            untrained = model is None and embedded_model_dir() is None
            _models[model] = DemoModel(pipeline, description, untrained, **model_identity(model, pipeline))
        return _models[model]


def model_identity(model: str | None, pipeline: Any) -> dict[str, Any]:
    """The name, card link, card text and one-line summary the page shows for `model` (see `DemoModel`)."""
    from .hub import is_local

    if model is None and embedded_model_dir() is None:
        return {
            "name": "untrained tiny model",
            "summary": "UNTRAINED tiny model (random weights: no trained model is embedded; the scores mean nothing)",
        }
    folder = Path(embedded_model_dir() if model is None else getattr(pipeline.model, "name_or_path", model))
    card_path = folder / "README.md"
    card = strip_front_matter(card_path.read_text(encoding="utf-8")) if card_path.is_file() else None
    if model is not None and not is_local(model):  # a Hub repo: its id, its page
        return {"name": str(model), "card_url": f"https://huggingface.co/{model}", "card": card}
    name = folder.name if model is None else Path(model).name
    summary = ""
    if model is None:
        summary = (
            "the model embedded in the poolingvq package: log-mel + a small MIDI-BERT trained here, no MERT"
        )
        metrics = folder / "metrics.json"
        if metrics.is_file():
            test = json.loads(metrics.read_text())["test"]
            summary += f"; EMOPIA test accuracy {test['accuracy']:.2f}, macro-F1 {test['macro_f1']:.2f}"
    return {"name": name, "card_url": space_file_url(card_path), "card": card, "summary": summary}


def strip_front_matter(card: str) -> str:
    """A model card's Markdown without its YAML header (`---` ... `---`)."""
    if card.startswith("---"):
        end = card.find("\n---", 3)
        if end != -1:
            return card[end + 4 :].lstrip("\n")
    return card


def space_file_url(path: Path) -> str | None:
    """The page of `path` in this Space's repo on the Hub, when the app runs on a Space (which sets `SPACE_ID`)
    and the file is part of the Space's folder (the working directory a Space runs its app in); else None."""
    space_id = os.environ.get("SPACE_ID")
    if not space_id or not path.is_file():
        return None
    try:
        relative = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return None
    return f"https://huggingface.co/spaces/{space_id}/blob/main/{relative.as_posix()}"


def model_markdown(demo_model: DemoModel) -> str:
    """The model's name, linked to its card when it has a page, and what it is: one line of Markdown."""
    name = html.escape(demo_model.name)
    text = f"[{name}]({demo_model.card_url})" if demo_model.card_url else f"`{name}`"
    if demo_model.summary:
        text += f" ({html.escape(demo_model.summary)})"
    return text


# ----------------------------------------------------------------------------------------------- the figures


def valence_arousal(scores: dict[str, float]) -> tuple[float, float]:
    """Expected valence and arousal on [-1, 1] from the quadrant probabilities.

    valence = P(Q1) + P(Q4) - P(Q2) - P(Q3), arousal = P(Q1) + P(Q2) - P(Q3) - P(Q4).
    """
    probabilities = np.array([scores.get(q, 0.0) for q in QUADRANT_LABELS])
    return float(probabilities @ VALENCE_SIGNS), float(probabilities @ AROUSAL_SIGNS)


def valence_arousal_figure(scores: dict[str, float]) -> Figure:
    """The piece as a point on Russell's valence-arousal plane, the four quadrants labelled."""
    valence, arousal = valence_arousal(scores)
    figure = Figure(figsize=(4.6, 4.4), layout="constrained")
    ax = figure.subplots()
    ax.set(
        xlim=(-1, 1),
        ylim=(-1, 1),
        xlabel="valence  (negative → positive)",
        ylabel="arousal  (calm → excited)",
    )
    ax.set_aspect("equal")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(0, color="0.6", lw=0.8)
    for quadrant, (x, y) in QUADRANT_CORNERS.items():
        ax.text(
            x, y, f"{quadrant}\n{short_meaning(quadrant)}\n{scores.get(quadrant, 0.0):.0%}",
            ha="center", va="center", color="0.35", fontsize=9,
        )  # fmt: skip
    ax.scatter([valence], [arousal], s=140, color="#C44E52", edgecolor="black", zorder=3)
    ax.annotate(
        f"({valence:+.2f}, {arousal:+.2f})", (valence, arousal), textcoords="offset points", xytext=(8, 8)
    )
    ax.set_title("expected valence and arousal", fontsize=10)
    return figure


def pooling_figure(
    details: dict[str, Any], window_size: int, window_stride: int, codebook_size: int
) -> Figure:
    """What PoolingVQ did with the audio, in the spirit of the paper's Fig. 2.

    Top: the code index of every audio frame over time. Bottom: the rule that pooled each window (average,
    weighted average, max), one colour per rule; each window is drawn over the `window_stride` frames it adds.
    Right: the sequence length before and after pooling.

    Args:
        details: the pipeline's `return_details=True` output (`codes` [T], `window_rules` [W], `frame_rate`).
    """
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    grid = figure.add_gridspec(2, 2, width_ratios=(6, 1), height_ratios=(3, 1))
    codes_ax = figure.add_subplot(grid[0, 0])
    rules_ax = figure.add_subplot(grid[1, 0], sharex=codes_ax)
    lengths_ax = figure.add_subplot(grid[:, 1])

    codes = np.asarray(details.get("codes", []))
    rules = details.get("window_rules", [])
    if codes.size == 0:  # a model without quantization (pooling="none") has no codes to show
        codes_ax.text(0.5, 0.5, "this model does not quantize: no codes", ha="center", va="center")
        return figure

    frame_rate = float(details["frame_rate"])
    frames, windows = int(details["audio_frames"]), int(details["pooled_windows"])
    seconds = np.arange(codes.size) / frame_rate
    codes_ax.scatter(seconds, codes, c=codes, cmap="tab20", vmin=0, vmax=max(codebook_size - 1, 1), s=6)
    codes_ax.set(ylabel="code index", ylim=(-0.5, codebook_size - 0.5))
    codes_ax.set_title(
        f"PoolingVQ: {frames} frames ({frames / frame_rate:.1f} s at {frame_rate:g}/s) → {windows} pooled windows "
        f"(window {window_size}, stride {window_stride})",
        fontsize=10,
    )
    codes_ax.tick_params(labelbottom=False)

    # one cell per window, as wide as the frames it adds (its stride), coloured by its rule
    rule_index = (np.asarray(rules)[:, None] == np.asarray(POOLING_RULES)).argmax(-1)  # [W]
    rules_ax.imshow(
        rule_index[None, :],
        cmap=ListedColormap([RULE_COLOURS[rule] for rule in POOLING_RULES]),
        vmin=-0.5,
        vmax=len(POOLING_RULES) - 0.5,
        aspect="auto",
        interpolation="nearest",
        extent=(0, len(rules) * window_stride / frame_rate, 0, 1),
    )
    rules_ax.set(xlabel="time (s)", yticks=[], xlim=(0, max(frames, 1) / frame_rate))
    counts = Counter(rules)
    rules_ax.legend(
        handles=[Patch(color=RULE_COLOURS[r], label=f"{RULE_NAMES[r]} ({counts[r]})") for r in POOLING_RULES],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.9),
        ncol=3,
        fontsize=8,
        frameon=False,
    )

    lengths_ax.bar(["before", "after"], [frames, windows], color=["0.6", "0.25"])
    for x, value in enumerate((frames, windows)):
        lengths_ax.text(x, value, str(value), ha="center", va="bottom", fontsize=9)
    lengths_ax.set_title(f"length ÷{frames / max(windows, 1):.1f}", fontsize=10)
    lengths_ax.set_yticks([])
    lengths_ax.set_ylim(0, frames * 1.15)
    return figure


def read_piano_roll(midi_path: str | Path, max_seconds: float) -> tuple[dict[str, np.ndarray], float]:
    """The pitched notes of a MIDI file that start within `max_seconds`, and the piece's length in seconds.

    Returns ({"time", "duration", "pitch", "velocity"} arrays [N] in seconds, end of the piece in seconds).
    Drum tracks are left out: their pitches name instruments, not notes.
    """
    # The package's hardened reader: size cap and chunk walk before symusic parses an upload.
    score = load_score(midi_path).to("second")
    tracks = [track.notes.numpy() for track in score.tracks if not track.is_drum and len(track.notes)]
    keys = ("time", "duration", "pitch", "velocity")
    notes = {key: np.concatenate([t[key] for t in tracks]) if tracks else np.zeros(0) for key in keys}
    kept = notes["time"] < max_seconds
    return {key: value[kept].astype(float) for key, value in notes.items()}, float(score.end())


def piano_roll_figure(notes: dict[str, np.ndarray], end: float, max_seconds: float = 60.0) -> Figure:
    """A piano roll of the notes `read_piano_roll` kept (the part the model reads), darker when louder.

    Args:
        notes: {"time", "duration", "pitch", "velocity"} arrays [N], times in seconds.
        end: the length of the whole piece in seconds (the title says when it was cut to `max_seconds`).
    """
    height_inches = 3.2
    figure = Figure(figsize=(10, height_inches), layout="constrained")
    ax = figure.subplots()
    pitches = notes["pitch"]
    low, high = (pitches.min() - 2, pitches.max() + 2) if len(pitches) else (58, 62)
    # one LineCollection for all notes (not a patch per note); each line about a semitone thick
    semitone_points = 0.7 * height_inches * 72 / (high - low)
    loudness = 0.35 + 0.65 * notes["velocity"] / 127
    ax.hlines(
        pitches,
        notes["time"],
        notes["time"] + notes["duration"],
        colors=colormaps["Blues"](loudness),
        linewidth=max(semitone_points, 1.0),
    )
    crop = f"first {max_seconds:g} s of {end:.1f} s" if end > max_seconds else f"{end:.1f} s"
    ax.set_title(f"piano roll: {len(pitches)} notes, {crop}", fontsize=10)
    ax.set(
        xlabel="time (s)", ylabel="MIDI pitch", xlim=(0, max(min(end, max_seconds), 1e-3)), ylim=(low, high)
    )
    return figure


# ----------------------------------------------------------------------------------------------- prediction


def user_message(error: Exception) -> str:
    """A one-line message for the page: the uploaded file's own name (not the server's temporary path) and the
    problem, HTML-escaped because Gradio renders error messages as HTML and file names come from visitors."""
    if isinstance(error, PoolingVQInputError):
        name = Path(error.source).name
        message = f"{name}: {error.problem.replace(error.source, name)}"
    else:
        message = str(error)
    return html.escape(message, quote=False)


def _input_summary(kind: str, path: str, seconds: float, max_seconds: float, synthesized: bool) -> str:
    note = f"{seconds:.1f} s"
    if seconds > max_seconds:
        note += f"; **only the first {max_seconds:g} s are analysed**"
    if synthesized:
        note += "; the audio is synthesized from it"
    return f"{kind} `{html.escape(Path(path).name)}` ({note})"


def predict_for_demo(
    audio_path: str | None, midi_path: str | None, model: str | None = None
) -> tuple[dict[str, float], Figure, Figure, Figure | None, str]:
    """Everything the page shows for one piece.

    Args:
        audio_path: an audio file (wav, flac, ogg, mp3), or None.
        midi_path: a MIDI file, or None (then the model must read audio alone).
        model: a model folder or Hub id; None: the default model (embedded, else untrained tiny).

    Returns:
        ({"Q1: happy / excited": p1, ...} summing to 1, the valence-arousal figure, the pooling figure, the piano
        roll (None without MIDI), a Markdown summary).

    Raises:
        gr.Error: for any input the model cannot use, with the file's name and problem.
    """
    import gradio as gr

    if not audio_path and not midi_path:
        raise gr.Error("Give an audio file, a MIDI file, or both (or pick one of the examples).")
    try:
        demo_model = get_model(model)
        classify = demo_model.pipeline
        inputs = {key: path for key, path in (("audio", audio_path), ("midi", midi_path)) if path}
        details = classify(inputs, return_details=True)
        config = classify.model.config
        max_seconds = float(classify.feature_extractor.max_seconds or float("inf"))
        roll, midi_seconds = None, None
        if midi_path:
            notes, midi_seconds = read_piano_roll(midi_path, max_seconds)
            roll = piano_roll_figure(notes, midi_seconds, max_seconds)
        summary = _summary(demo_model, details, audio_path, midi_path, midi_seconds, max_seconds)
    except (PoolingVQInputError, ValueError) as error:
        raise gr.Error(user_message(error), print_exception=False) from error
    except Exception as error:  # a bug, not the visitor's fault: log it, say so, keep serving
        logger.exception("poolingvq demo: prediction failed")
        raise gr.Error(
            f"PoolingVQ failed on this input ({type(error).__name__}: {html.escape(str(error))}). "
            "This is a bug; please report it with the file.",
            print_exception=False,  # logged above, with its traceback
        ) from error

    scores = {quadrant_display_name(s["label"]): s["score"] for s in details["scores"]}
    by_quadrant = {s["label"]: s["score"] for s in details["scores"]}
    return (
        scores,
        valence_arousal_figure(by_quadrant),
        pooling_figure(details, config.window_size, config.window_stride, config.codebook_size),
        roll,
        summary,
    )


def _summary(
    demo_model: DemoModel,
    details: dict[str, Any],
    audio_path: str | None,
    midi_path: str | None,
    midi_seconds: float | None,
    max_seconds: float,
) -> str:
    import soundfile

    lines = [f"**Model:** {model_markdown(demo_model)}"]
    if audio_path:
        seconds = soundfile.info(audio_path).duration
        lines.append("**Audio:** " + _input_summary("audio", audio_path, seconds, max_seconds, False))
    if midi_path:
        lines.append(
            "**MIDI:** " + _input_summary("MIDI", midi_path, midi_seconds, max_seconds, not audio_path)
        )
    if "codes" in details:
        counts = Counter(details.get("window_rules", []))
        frames, windows = details["audio_frames"], details["pooled_windows"]
        rules = ", ".join(f"{counts[rule]} {name}" for rule, name in RULE_NAMES.items())
        lines.append(
            f"**PoolingVQ:** {frames} audio frames → {windows} pooled windows "
            f"({frames / max(windows, 1):.1f}× shorter); windows pooled by {rules}"
        )
    if "midi_tokens" in details:
        lines.append(f"**MIDI-BERT:** {details['midi_tokens']} compound-word tokens")
    if details.get("heard"):
        lines.append(f"**Heard:** {details['heard']}")
    best = details["scores"][0]
    valence, arousal = valence_arousal({s["label"]: s["score"] for s in details["scores"]})
    lines.append(
        f"**Reading:** {quadrant_display_name(best['label'])} ({best['score']:.0%}); "
        f"valence {valence:+.2f}, arousal {arousal:+.2f}"
    )
    return "\n\n".join(lines)


# ----------------------------------------------------------------------------------------------- the page


def write_examples(folder: str | Path | None = None) -> list[list[str | None]]:
    """Example inputs the project writes itself: one MIDI per quadrant, and one piece as audio + MIDI.

    Returns the rows of `gr.Examples` ([audio path or None, MIDI path]).
    """
    import soundfile

    from .synthesis_poolingvq import synthesize_midi

    # a fresh folder per process by default: no two servers race on the same files, and none serves stale ones
    folder = Path(folder if folder is not None else tempfile.mkdtemp(prefix="poolingvq-demo-examples-"))
    rows: list[list[str | None]] = []
    for quadrant in QUADRANT_LABELS:
        name = short_meaning(quadrant).replace(" / ", "-").replace(" ", "-")
        rows.append([None, str(write_example_midi(folder / f"example_{quadrant}_{name}.mid", quadrant))])
    audio_path = folder / "example_Q1_happy-excited.wav"
    soundfile.write(audio_path, synthesize_midi(rows[0][1], sample_rate=24_000), 24_000)
    rows.append([str(audio_path), rows[0][1]])
    return rows


def build_demo(model: str | None = None, include_default: bool = True) -> Any:
    """The Gradio app (`gr.Blocks`): inputs, the predict button, the label, the three figures, the summary.

    Args:
        model: a model folder or Hub id offered first in the model menu.
        include_default: also offer the default model (the embedded one, else an untrained tiny one); a Space
            exported for one model (`poolingvq export-space --model`) offers that model alone.
    """
    import gradio as gr

    models: dict[str, str | None] = {}
    if model is not None:
        models[str(model)] = str(model)
    if include_default or model is None:
        models[DEFAULT_MODEL_CHOICE] = None
    loaded = {choice: get_model(value) for choice, value in models.items()}
    first = next(iter(loaded.values()))
    max_seconds = first.pipeline.feature_extractor.max_seconds
    config = first.pipeline.model.config
    notes = [
        f"**{'Default model' if choice == DEFAULT_MODEL_CHOICE else 'Model'}:** {model_markdown(demo_model)}"
        for choice, demo_model in loaded.items()
    ]
    if any(demo_model.untrained for demo_model in loaded.values()):
        notes.insert(
            0,
            "⚠️ **No trained model is embedded yet: the default model is UNTRAINED and its scores mean "
            "nothing.** The figures still show what the pipeline does with your file.",
        )

    def predict(audio_path: str | None, midi_path: str | None, model_choice: str):
        if model_choice not in models:
            raise gr.Error(f"unknown model {html.escape(str(model_choice))!r}")
        return predict_for_demo(audio_path, midi_path, models[model_choice])

    with gr.Blocks(
        title="PoolingVQ: what does it hear?", analytics_enabled=False, delete_cache=DELETE_CACHE
    ) as demo:
        gr.Markdown(
            "# PoolingVQ: music emotion, and what the model hears\n"
            "Give a piece as **audio** (upload or microphone) and/or **MIDI**. PoolingVQ tells which Russell "
            "quadrant it belongs to and shows how it shrank the audio: the code of every frame and the rule "
            "(average, weighted average, max) that pooled each window. A MIDI file alone works: its audio is "
            f"synthesized. Only the first {max_seconds:g} s are analysed; uploads are capped at "
            f"{MAX_UPLOAD_SIZE.upper()}."
        )
        gr.Markdown("\n\n".join(notes), elem_id="model-note")
        for demo_model in loaded.values():
            if demo_model.card:
                with gr.Accordion(f"Model card: {demo_model.name}", open=False):
                    gr.Markdown(demo_model.card, elem_classes="model-card")
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(
                    sources=["upload", "microphone"], type="filepath", label="audio", elem_id="audio-input"
                )
                midi = gr.File(
                    file_types=MIDI_FILE_TYPES,
                    type="filepath",
                    label="MIDI file (.mid, .midi)",
                    elem_id="midi-input",
                )
                model_menu = gr.Dropdown(
                    [(loaded[choice].name, choice) for choice in models],
                    value=next(iter(models)),
                    label="model",
                )
                button = gr.Button("What does PoolingVQ hear?", variant="primary", elem_id="predict-button")
            with gr.Column():
                label = gr.Label(num_top_classes=4, label="quadrant", elem_id="quadrant-label")
                plane = gr.Plot(label="valence-arousal plane", format="png", elem_id="va-plane")
        summary = gr.Markdown(elem_id="summary")
        gr.Markdown(
            "### What PoolingVQ did with the audio (in the spirit of the paper's Fig. 2)\n"
            "Top: the codebook entry nearest to every audio frame, over time. Bottom: how each window of frames "
            f"was pooled: **average** when it holds at most {config.avg_max_distinct_codes} distinct code(s) "
            f"(a steady sound), **weighted average** up to {config.weighted_max_distinct_codes}, **max** above "
            "(the sound changes a lot). Right: the sequence length before and after pooling, which the fusion "
            "attends over."
        )
        pooling = gr.Plot(label="codes and pooling rules", format="png", elem_id="pooling-figure")
        roll = gr.Plot(label="piano roll", format="png", elem_id="piano-roll")
        gr.Examples(
            examples=write_examples(),
            inputs=[audio, midi],
            label="Example pieces the project writes itself (one MIDI per quadrant; one as audio + MIDI)",
        )
        button.click(
            predict,
            inputs=[audio, midi, model_menu],
            outputs=[label, plane, pooling, roll, summary],
            api_name="predict",
        )
    return demo


def launch_demo(
    demo: Any,
    host: str | None = "127.0.0.1",
    port: int | None = None,
    max_file_size: str | int = MAX_UPLOAD_SIZE,
    **kwargs: Any,
) -> Any:
    """Queue and launch the app with the upload cap; `host=None` lets Gradio choose (a Space sets 0.0.0.0).

    Extra keyword arguments go to `gr.Blocks.launch` (e.g. `prevent_thread_lock=True` in tests).
    """
    demo.queue(max_size=MAX_QUEUE_SIZE, default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, max_file_size=max_file_size, **kwargs)
    return demo


def demo_command(args: argparse.Namespace) -> int:
    """`poolingvq demo [--model DIR|REPO [--revision REV]] [--host H] [--port N]`: the Space's app, on this machine.

    A `--model` is resolved (a Hub repo downloaded) before the server starts, so a wrong name fails here, in one
    line, not later in the browser; with `--revision` the page offers that pinned snapshot's folder.
    """
    model, revision = getattr(args, "model", None), getattr(args, "revision", None)
    if model is not None:
        from .hub import resolve_model_dir

        folder = resolve_model_dir(model, revision, flag="--model")
        model = str(folder) if revision is not None else model
    demo = build_demo(model)
    launch_demo(demo, host=getattr(args, "host", None) or "127.0.0.1", port=getattr(args, "port", None))
    return 0


__all__ = [
    "MAX_UPLOAD_SIZE",
    "build_demo",
    "demo_command",
    "get_model",
    "launch_demo",
    "piano_roll_figure",
    "pooling_figure",
    "predict_for_demo",
    "valence_arousal",
    "valence_arousal_figure",
    "write_examples",
]
