"""Thread counts: one thread for small cores' training steps, the free cores for evaluation, or what is asked."""

import os
import subprocess
import sys
import time

import lightning as L
import pytest
import torch

from musicrnn.data import PianorollDataModule
from musicrnn.errors import MusicrnnError
from musicrnn.models import RNN
import musicrnn.threads as threads
from musicrnn.threads import SMALL_HIDDEN, Threads, choose_threads, free_cores

CORES = os.cpu_count() or 1


def test_small_cores_get_one_thread_and_a_request_wins():
    assert choose_threads(300) == 1
    assert choose_threads(SMALL_HIDDEN) == 1
    assert choose_threads(300, requested=3) == 3
    assert choose_threads(4 * SMALL_HIDDEN) is None  # the Threads callback follows the free cores
    assert choose_threads(300, wide=True) is None
    assert choose_threads(4 * SMALL_HIDDEN, requested=2) == 2


def test_negative_threads_is_one_line_error():
    with pytest.raises(MusicrnnError, match="--threads must be 0"):
        choose_threads(300, requested=-1)


@pytest.mark.skipif(CORES < 2, reason="needs a core to take")
def test_a_busy_process_takes_a_core_and_our_own_work_does_not():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert free_cores(0.5) <= CORES - 1
    finally:
        hog.kill()
        hog.wait()
    before = free_cores(0.5)  # other processes' load alone
    free_cores(None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    a, start = torch.randn(300, 300), time.perf_counter()
    while time.perf_counter() - start < 0.5:  # a core's worth of this process's own work
        a = torch.tanh(a @ a)
    torch.set_num_threads(threads)
    assert free_cores(None) >= before


class ThreadProbe(L.Callback):
    """The thread count each training and validation batch ran with."""

    def __init__(self):
        self.seen = {"train": set(), "val": set()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen["train"].add(torch.get_num_threads())

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.seen["val"].add(torch.get_num_threads())


def fit_with_threads(jsb_root, tmp_path, follow: bool, epochs: int = 2) -> ThreadProbe:
    """An RNN run under ``Threads(follow)``; returns what each phase's batches ran with."""
    probe, threads = ThreadProbe(), torch.get_num_threads()
    dm = PianorollDataModule("jsb", str(jsb_root), str(tmp_path / "data"), batch_size=2)
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0,
                        callbacks=[Threads(follow), probe])
    try:
        torch.set_num_threads(1)
        trainer.fit(RNN(hidden=8), datamodule=dm)
    finally:
        torch.set_num_threads(threads)
    return probe


def test_validation_runs_on_the_free_cores_and_training_on_one_thread(jsb_root, tmp_path):
    probe = fit_with_threads(jsb_root, tmp_path, follow=False)
    assert probe.seen["train"] == {1}
    assert probe.seen["val"] and all(1 <= n <= CORES for n in probe.seen["val"])
    if CORES > 1 and free_cores(0.3) == CORES:  # an idle machine: validation took every core
        assert max(probe.seen["val"]) > 1


@pytest.mark.skipif(CORES < 2, reason="needs a core to take")
def test_a_following_run_leaves_a_taken_core_alone(jsb_root, tmp_path):
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        probe = fit_with_threads(jsb_root, tmp_path, follow=True)
    finally:
        hog.kill()
        hog.wait()
    assert probe.seen["train"] and max(probe.seen["train"] | probe.seen["val"]) <= CORES - 1


def test_short_epochs_wait_for_a_reading_only_once(jsb_root, tmp_path, monkeypatch):
    # Epochs of milliseconds: only the first reading may wait (sample the load for min_window seconds); the
    # later epoch starts and validations take the last count again instead of sleeping 0.2 s each.
    waits = []

    def recorded(sample_seconds=0.25):
        waits.append(sample_seconds)
        return free_cores(sample_seconds)

    monkeypatch.setattr(threads, "free_cores", recorded)
    probe = fit_with_threads(jsb_root, tmp_path, follow=True, epochs=6)
    assert len(probe.seen["train"]) >= 1 and len(waits) >= 2
    assert sum(w is not None for w in waits) == 1
