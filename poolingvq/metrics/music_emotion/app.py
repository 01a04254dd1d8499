"""The metric's Space: a table of predicted and reference class ids in, the scores out.

What `evaluate.utils.launch_gradio_widget` builds for evaluate's own metrics, written for gradio 6: evaluate 0.4's
helper still calls `gr.inputs` / `gr.outputs`, which gradio 4 removed. Its parsing helpers are reused as they are,
so the table reads the same way (one row per clip; empty rows are dropped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import evaluate
import gradio as gr
from evaluate.utils.gradio import (
    infer_gradio_input_types,
    json_to_string_type,
    parse_gradio_data,
    parse_readme,
)

HERE = Path(__file__).resolve().parent


def build_widget(metric: evaluate.EvaluationModule) -> gr.Interface:
    """A form with one editable row per clip (`predictions`, `references`) whose answer is `metric.compute`."""
    feature_names, feature_types = zip(*metric.features.items(), strict=True)
    input_types = infer_gradio_input_types(feature_types)

    def compute(data: Any) -> dict[str, Any]:
        return metric.compute(**parse_gradio_data(data, input_types))

    return gr.Interface(
        fn=compute,
        inputs=gr.Dataframe(
            headers=list(feature_names),
            column_count=len(feature_names),
            row_count=4,
            datatype=json_to_string_type(input_types),
            value=[[0, 0], [1, 1], [2, 3], [3, 3]],
            label="one row per clip: class ids, 0 = Q1 .. 3 = Q4",
        ),
        outputs=gr.JSON(label=metric.name),
        title=f"Metric: {metric.name}",
        description=metric.info.description,
        article=parse_readme(HERE / "README.md"),
        flagging_mode="never",
    )


# Loaded from this folder, not from the Hub by name: the Space then serves exactly the code beside it, offline.
module = evaluate.load(str(HERE))
demo = build_widget(module)

if __name__ == "__main__":
    demo.launch()
