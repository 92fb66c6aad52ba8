"""Train a model and test its best checkpoint: ``python train.py --help``.

The code is ``musicrnn/train.py``; ``pip install -e .`` also installs it as ``musicrnn-train``.
"""

import sys

from musicrnn.train import main

if __name__ == "__main__":
    sys.exit(main())
