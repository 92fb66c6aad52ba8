"""A callback that times the training batches of a ``train.py`` run, for ``speed_ratios.py``.

Added on the command line (``--trainer.callbacks+=train_timer.TrainTimer`` with ``benchmarks/`` on
``PYTHONPATH``), so the same file times any version of ``train.py``. It times from the end of the
first ``warmup`` batches to the end of the last one: everything the training loop does in between
(data loading, hooks, logging, optimizer steps, epoch ends) counts. It writes ``{"frames", "seconds"}``
to the file named by ``$TRAIN_TIMER_OUT`` and ends the process once training ends, before ``train.py``
tests a checkpoint. Run it with validation off (``--trainer.limit_val_batches 0``).
"""

from __future__ import annotations

import json
import os
import time

import lightning as L


class TrainTimer(L.Callback):
    def __init__(self, warmup: int = 5):
        self.warmup, self.seen, self.frames, self.seconds = warmup, 0, 0, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now, self.seen = time.perf_counter(), self.seen + 1
        if self.seen == self.warmup:
            self.start = now
        elif self.seen > self.warmup:
            self.frames += int(batch["mask"].sum())
            self.seconds = now - self.start

    def on_train_end(self, trainer, pl_module):
        with open(os.environ["TRAIN_TIMER_OUT"], "w") as f:
            json.dump({"frames": self.frames, "seconds": self.seconds}, f)
        raise SystemExit(0)  # nothing after training is timed: skip the test of the best checkpoint
