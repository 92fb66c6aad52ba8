"""Sample new music from a checkpoint as MIDI, PNG and WAV: ``python generate.py --help``.

The code is ``musicrnn/generate.py``; ``pip install -e .`` also installs it as ``musicrnn-generate``.
"""

import sys

from musicrnn.generate import main

if __name__ == "__main__":
    sys.exit(main())
