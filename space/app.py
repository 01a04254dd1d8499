"""The PoolingVQ Hugging Face Space: a thin launcher, the app itself is `poolingvq.demo` (shared with
`poolingvq demo`), installed from requirements.txt.

Set the Space variable POOLINGVQ_MODEL to a model folder or Hub id to offer it first in the model menu; without
it the page runs the package's default model (the embedded one, else an untrained tiny model, which it says).
"""

import os

from poolingvq.demo import build_demo, launch_demo

demo = build_demo(model=os.environ.get("POOLINGVQ_MODEL") or None)

if __name__ == "__main__":
    # host=None: Gradio reads GRADIO_SERVER_NAME, which a Space sets to 0.0.0.0
    launch_demo(demo, host=None)
