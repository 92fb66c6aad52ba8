"""How many CPU threads a training run uses (``train.py --threads``; 0 chooses).

Measured on the 2-core development machine, whole ``train.py`` runs on JSB (8 epochs of the RNN, 3 of the
RNN-NADE, default configs): one thread trains as fast as two on an idle machine (RNN 18.2 s against
19.0 s, RNN-NADE 14.9 s against 15.9 s), and with one core taken by another process two threads slow
down 2.5-3x (47.0 s and 43.4 s) while one thread does not (17.0 s and 13.3 s): at these sizes each
product is too small to split, and PyTorch's threads wait on each other at every one of the thousands
of small operations per batch. So recurrent cores up to ``SMALL_HIDDEN`` units get one thread; larger
ones (not measured here) get the cores that are free now.

Re-measured with this choice (``python benchmarks/busy.py``; whole runs, one core busy against idle):
one thread 1.07x (RNN), 1.85x (RNN-NADE), 1.91x (RNN-RBM); two threads 2.80x, 2.04x, 2.49x. The rest
of the slowdown is the machine's: on that VM a one-thread kernel pinned to one CPU slowed 1.3-2.3x when a
busy loop ran pinned to the other (``busy.floor``), so no thread count reaches 1.2x there.
"""

from __future__ import annotations

import psutil

from musicrnn.errors import MusicrnnError

SMALL_HIDDEN = 512  # the largest core measured to gain nothing from a second thread is 300 units


def free_cores(sample_seconds: float = 0.25) -> int:
    """Cores less than half busy over a short sample (at least 1)."""
    busy = psutil.cpu_percent(interval=sample_seconds, percpu=True)
    return max(1, sum(b < 50 for b in busy))


def choose_threads(hidden: int, requested: int = 0) -> int:
    """``requested`` if positive, else 1 for cores of up to ``SMALL_HIDDEN`` units, else the free cores."""
    if requested < 0:
        raise MusicrnnError(f"--threads must be 0 (choose) or more, got {requested}")
    if requested:
        return requested
    return 1 if hidden <= SMALL_HIDDEN else free_cores()
