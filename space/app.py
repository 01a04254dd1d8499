"""The PoolingVQ Space, written by `poolingvq export-space` (export again rather than edit).

The page is `poolingvq.demo`, from the copy of the package's code beside this file, so this Space and
`poolingvq demo` run the same code. The Space variable POOLINGVQ_MODEL (a Hub repo id) replaces the model.
"""

import os
from pathlib import Path

from poolingvq.demo import build_demo, launch_demo

HERE = Path(__file__).resolve().parent
EXPORTED_MODEL = None  # the model embedded in poolingvq/ beside this file

demo = build_demo(
    model=os.environ.get("POOLINGVQ_MODEL") or EXPORTED_MODEL,
    include_default=EXPORTED_MODEL is None,  # an exported model is the page's only model
)

if __name__ == "__main__":
    # host=None: Gradio reads GRADIO_SERVER_NAME, which a Space sets to 0.0.0.0
    launch_demo(demo, host=None)
