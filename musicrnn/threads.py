"""How many CPU threads a run uses (``train.py --threads``; 0 chooses): one for the training steps of
small recurrent cores, the cores that other processes leave free for evaluation, large cores and wide
products.

Training steps, measured on the 2-core development machine, whole ``train.py`` runs on JSB (8 epochs of
the RNN, 3 of the RNN-NADE, default configs): one thread trains as fast as two on an idle machine (RNN
18.2 s against 19.0 s, RNN-NADE 14.9 s against 15.9 s), and with one core taken by another process two
threads slow down 2.5-3x (47.0 s and 43.4 s) while one thread does not (17.0 s and 13.3 s): at these
sizes each product is too small to split, and PyTorch's threads wait on each other at every one of the
thousands of small operations per batch. So recurrent cores up to ``SMALL_HIDDEN`` units train on one
thread; larger ones (not measured here) on the cores that are free, re-read at every epoch.

Evaluation is different: the RNN-RBM's AIS works on ``(frames, runs, units)`` tensors of millions of
numbers, which two threads share well (256 JSB frames, idle machine: 3.1 s on one thread, 2.1 s on two).
So validation and test (``Threads``) and ``evaluate`` use the cores that other processes leave free at
their start, and training goes back to its own count after each validation. The RNN-RBM's training
products are wide too (CD-k's Gibbs chain runs over every frame of a batch at once): the tutorial-size
model, idle, ``train.py --threads 0`` (two threads here) against ``--threads 1``, timed by
``benchmarks/train_timer.py``, three pairs each (2026-11-23): batch 16 71-84k frames/s against 54-58k,
batch 4 28-41k against 35-38k, batch 1 18-23k against 16-20k. So it trains on the free cores, re-read at
every epoch; on a busy machine it then trains as one thread allows, and its busy/idle ratio is about
what the second core gives when idle (``benchmarks/busy.py``).

Busy against idle (``python benchmarks/busy.py``; whole runs of each JSB config, one core taken by a busy
loop, on the 2-core AMD EPYC VM, 2026-11-23, ten runs): RNN 0.97-1.05x, RNN-NADE 0.96-1.10x, RNN-RBM
0.95-1.21x (20 epochs, its config's validation period; 1.17x, 1.17x, 0.98x, 0.95x in the last four) with
these choices, against 2.0-2.5x, 1.6-2.1x and 2.5-3.1x with two threads throughout; the RNN-RBM's busy run took
1.01x, 1.09x and 1.06x as long as an idle run on one thread. Idle, one and two threads differ by 10-15% in either
direction from one run of the script to the next for the RNN and RNN-NADE. An RNN-RBM validating every
epoch, whose AIS then takes half the run, reads up to 1.3x: idle, that AIS runs 1.45x faster on the
second core.
"""

from __future__ import annotations

import functools
import math
import os
import time

import psutil
import torch
from lightning.pytorch.callbacks import Callback

from musicrnn.errors import MusicrnnError

SMALL_HIDDEN = 512  # the largest core measured to gain nothing from a second thread is 300 units


@functools.cache
def _process(pid: int) -> psutil.Process:
    """One ``psutil.Process`` per process id: its ``cpu_percent()`` reads the time since its own last call."""
    return psutil.Process(pid)


def free_cores(sample_seconds: float | None = 0.25) -> int:
    """Cores that other processes leave free, at least 1: all cores less the load of every process but
    this one, rounded to whole cores, over ``sample_seconds`` (None: since the previous call, no wait)."""
    me = _process(os.getpid())
    if sample_seconds is not None:
        psutil.cpu_percent(percpu=True)
        me.cpu_percent()
        time.sleep(sample_seconds)
    total = sum(psutil.cpu_percent(percpu=True))  # % of one core, summed over cores, since the previous call
    others = max(0.0, total - me.cpu_percent()) / 100
    return max(1, (psutil.cpu_count() or 1) - math.floor(others + 0.5))


def follows_free_cores(hidden: int, wide: bool = False) -> bool:
    """Whether training steps use the free cores (re-read every epoch) instead of one thread: for cores of
    more than ``SMALL_HIDDEN`` units, or models whose products are ``wide`` (``SequenceModel.wide_products``)."""
    return wide or hidden > SMALL_HIDDEN


def choose_threads(hidden: int, requested: int = 0, wide: bool = False) -> int | None:
    """Threads for training: ``requested`` if positive, else None if ``follows_free_cores`` (the ``Threads``
    callback then sets the free cores at each epoch start), else 1."""
    if requested < 0:
        raise MusicrnnError(f"--threads must be 0 (choose) or more, got {requested}")
    if requested:
        return requested
    return None if follows_free_cores(hidden, wide) else 1


class Threads(Callback):
    """Thread counts through a run (``train.py --threads 0``): validation and test on the cores free when
    they start; training on one thread, or, if ``follow``, on the cores free when each epoch starts and
    after each validation, so that a run started on an idle machine drops to one thread once another
    process takes a core.

    The load is read over the time since the last reading (no wait). A window shorter than ``min_window``
    seconds says nothing (a reading over a few milliseconds): the first reading (the sanity check right
    after setup) waits for the rest of it; later ones take the last reading's count again and let the
    window grow. (Waiting at every epoch start cost 0.2 s an epoch: in the batch-16 benchmark of
    ``benchmarks/speed_ratios.py``, whose epochs take 0.2 s, half of the timed run.)
    """

    def __init__(self, follow: bool = False, min_window: float = 0.2):
        self.follow, self.min_window = follow, min_window
        self.since, self.count = time.monotonic(), 0  # the last reading: when, and its free cores (0: none yet)

    def _set(self, threads: int | None = None):
        """Set ``threads``, or the free cores."""
        if threads is None:
            short = time.monotonic() - self.since < self.min_window
            if short and self.count:
                threads = self.count
            else:
                threads = self.count = free_cores(self.min_window if short else None)
                self.since = time.monotonic()
        torch.set_num_threads(threads)

    def setup(self, trainer, pl_module, stage):
        free_cores(None)  # starts the load measurement
        self.since = time.monotonic()

    def _evaluate(self, trainer, pl_module):
        self._set()

    def _train(self, trainer, pl_module):
        self._set(None if self.follow else 1)

    on_validation_start = on_test_start = _evaluate
    on_train_epoch_start = on_validation_end = on_test_end = _train
