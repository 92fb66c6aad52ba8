"""Speed-ups of issue 13 measured side by side in one process (``make bench`` prints them).

- ``nade_train_speedup``: RNN-NADE training steps on JSB with ``musicrnn.models.nade.NADELogProb`` against the
  kept reference ``benchmarks/nade_reference.py``.
- ``rbm_train_speedup``: whole ``train.py`` runs of the RNN-RBM at the Theano tutorial's sizes (100
  recurrent, 150 hidden, CD-15, chunks of 100 frames) on JSB, this tree against ``BASELINE`` (the commit
  before issue 13's training speed-ups, exported with ``git archive``), timed by
  ``benchmarks/train_timer.py``.

On a loaded machine only ratios of interleaved timings mean anything: each repeat times the reference
and the new code one after the other on the same batches, and the median of the per-repeat ratios is
reported.

Where the RNN-RBM's time goes (tutorial sizes, JSB, 2-core AMD EPYC, 2026-11-23; parts of a bare training
step timed in turn, torch.profiler, and stamps at the Lightning hooks of ``train.py``): at batch 16 (~900
frames, two threads) a bare step takes 14-15 ms: CD-15's Gibbs chain 8.3-8.8 ms (its 30 oneDNN products 2.9
ms; numpy's generator alone, serial at 1.65 ns a 64-bit word, ~2.8 ms for the 3.4 million uniforms), the
backward pass 2.6-3.1 ms, the recurrent core 0.9-1.4 ms. At batch 1 (~57 frames) a bare step takes ~2.5
ms: the Gibbs chain ~1 ms (its 30 products ~0.57 ms, MKL at its AVX2 peak of ~85 GFLOP/s at 60 rows,
where a oneDNN call's ~12 us of overhead costs as much), the recurrent core's 60 sequential steps
forward and backward ~0.47 ms; ``train.py`` adds Lightning's own work around the step, ~0.5 ms (a plain
PyTorch loop over the same ``DataLoader`` ran 2.8-2.9 ms a step against 3.2-3.3 ms for a bare ``Trainer``
in the same minutes).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import musicrnn.models.nade as nade  # noqa: E402
from musicrnn.corpora import load_corpus  # noqa: E402
from musicrnn.data import collate  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nade_reference import reference_nade_log_prob  # noqa: E402


def _train_seconds(model, opt, data) -> float:
    start = time.perf_counter()
    for b in data:
        cond, _ = model.core(b["x"])
        loss, _ = model.loss(cond, b["x"], b["mask"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def nade_train_speedup(root: str, data_dir: str = "data", batch_size: int = 16, steps: int = 8,
                       repeats: int = 5) -> float:
    """Median over ``repeats`` of (reference seconds / new seconds) for the same ``steps`` training
    steps of a default ``RNNNADE`` on JSB batches of ``batch_size`` whole sequences."""
    rolls = sorted((torch.from_numpy(r) for r in load_corpus("jsb", root, data_dir)["train"]), key=len)
    data = [collate(rolls[i:i + batch_size]) for i in range(0, len(rolls), batch_size)]
    torch.manual_seed(0)
    model = nade.RNNNADE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    new = nade.nade_log_prob
    ratios = []
    try:
        for r in range(repeats + 1):  # the first repeat warms up
            chunk = [data[(r * steps + i) % len(data)] for i in range(steps)]
            nade.nade_log_prob = reference_nade_log_prob
            ref_s = _train_seconds(model, opt, chunk)
            nade.nade_log_prob = new
            new_s = _train_seconds(model, opt, chunk)
            if r:
                ratios.append(ref_s / new_s)
    finally:
        nade.nade_log_prob = new
    return statistics.median(ratios)


BASELINE = "7c51904"  # the branch point of issue 13's speed work
REPO = Path(__file__).resolve().parent.parent


def _train_py_rate(tree: Path, root: str, batch_size: int, batches: int, epochs: int) -> float:
    """Training frames per second of one ``train.py`` run in ``tree`` (validation off)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "timer.json"
        env = {**os.environ, "TRAIN_TIMER_OUT": str(out), "PYTHONPATH": str(REPO / "benchmarks")}
        cmd = [sys.executable, "train.py", "--model", "RNNRBM", "--model.hidden", "100", "--model.rbm_hidden", "150",
               "--model.cd_steps", "15", "--data.dataset", "jsb", "--data.root", str(Path(root).resolve()),
               "--data.chunk_len", "100", "--data.batch_size", str(batch_size), "--trainer.max_epochs", str(epochs),
               "--trainer.limit_train_batches", str(batches), "--trainer.limit_val_batches", "0",
               "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
               # the samples' option changed its name after the baseline
               "--samples.every_n_epochs" if tree == REPO else "--sample_every_n_epochs", "0",
               "--checkpoint_dir", tmp, "--trainer.callbacks+=train_timer.TrainTimer"]
        run = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        if run.returncode or not out.exists():
            raise RuntimeError(f"train.py in {tree} failed:\n{run.stderr[-2000:]}")
        timing = json.loads(out.read_text())
    return timing["frames"] / timing["seconds"]


def rbm_train_speedup(root: str, batch_size: int, repeats: int = 3, baseline: str = BASELINE) -> float:
    """Median over ``repeats`` of (this tree's frames/s / the baseline's) for alternating ``train.py``
    runs; batch 1 runs 150 batches of one epoch, larger batches 4 epochs of 15 batches (all of JSB)."""
    batches, epochs = (150, 1) if batch_size == 1 else (15, 4)
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", baseline], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        ratios = []
        for _ in range(repeats):
            old = _train_py_rate(Path(tmp), root, batch_size, batches, epochs)
            new = _train_py_rate(REPO, root, batch_size, batches, epochs)
            ratios.append(new / old)
    return statistics.median(ratios)


def report(root: str, quick: bool = False) -> None:
    """The lines ``make bench`` prints (``quick``: one repeat each, a smoke run)."""
    repeats = 1 if quick else 3
    print(f"NADE train speed-up vs reference: {nade_train_speedup(root, repeats=2 * repeats - 1):.2f}x (aim 1.5x)",
          flush=True)
    print(f"RNN-RBM tutorial-size train speed-up: batch 16 {rbm_train_speedup(root, 16, repeats):.2f}x (aim 1.7x), "
          f"batch 1 {rbm_train_speedup(root, 1, repeats):.2f}x (aim 2x)", flush=True)


if __name__ == "__main__":
    report(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/pickle")
