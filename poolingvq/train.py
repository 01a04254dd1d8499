"""`accelerate launch -m poolingvq.train ...` (or `python -m poolingvq.train`): the training loop of `training.py`."""

import sys

from .training import main

if __name__ == "__main__":
    sys.exit(main())
