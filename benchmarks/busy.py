"""Training on a busy machine: whole ``train.py`` runs on JSB, idle and with one core taken (``make bench``).

    python benchmarks/busy.py [--root ../shared/data/pickle]

For each model's JSB config the wall time of ``train.py`` idle and while ``python -c "while True: pass"``
keeps one core busy, with ``--threads 0`` (chosen by ``musicrnn/threads.py``) and with ``--threads 2``
(PyTorch's default on this 2-core machine, what ``train.py`` used before), then the busy/idle ratio.
Target: within 1.2x with the chosen threads. Each run is a stretch of training as the config runs it,
test cut to one batch: the RNN and RNN-NADE validate every epoch (two batches here), the RNN-RBM every
20 epochs on a fifth of the validation set, so its run is 20 epochs, one validation period.

The RNN-RBM trains on the free cores (``musicrnn/threads.py``): the second core speeds its idle training
(bare training steps alternating one and two threads in one process, 2026-11-23: 1.13x at this config's
batch of 4, 1.42x at the tutorial sizes' batch 16) and its AIS (1.45x on 240 frames), and a busy run has
one core, so its chosen busy/idle ratio is about that gain whatever the code does. It is also timed with
one thread throughout, and the row ends with its chosen busy run against that idle one-thread run: what
the busy machine costs beyond the core.

Also, for the RNN-RBM, 3 epochs validating on two batches after each (``RNNRBM-val``, chosen threads
only; until 2026-11-23 the RNN-RBM's only row): validation is then about half the run, 20 times its
share under the config. That half gains 1.5x from the second core when the machine is idle (AIS works
on wide tensors) and loses it when a core is taken. On the 2-core AMD EPYC VM (2026-11-23):
medians of 0.95x to 1.21x for the config's 20 epochs, 1.03x to 1.32x for this row (ten runs).

Also the floor no thread count can beat: a one-thread loop of matrix products and sigmoids pinned to CPU
0, idle and with the busy loop pinned to CPU 1. On an earlier development VM, whose two CPUs shared a
physical core (or its frequency), that loop alone slowed 2.3x (0.57 s -> 1.30 s), so a busy neighbour
halved any process's speed there, whatever its threads; on the 2-core AMD EPYC VM of 2026-11-23 it ran
at 1.00x.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CUT_VAL = ["--trainer.limit_val_batches", "2"]  # validation every epoch, cut to two batches
# name: (config, epochs (None: the config's validation period), validation arguments, --threads settings timed:
# 0 (chosen) first, then 2 (two threads throughout) and 1 (one thread throughout, for the model that follows
# the free cores: what its busy runs can be compared with))
RUNS = {"RNN": ("configs/jsb/rnn.yaml", 8, CUT_VAL, (0, 2)),
        "RNNNADE": ("configs/jsb/rnn_nade.yaml", 3, CUT_VAL, (0, 2)),
        "RNNRBM": ("configs/jsb/rnn_rbm.yaml", None, [], (0, 2, 1)),  # one validation period of the config's
        "RNNRBM-val": ("configs/jsb/rnn_rbm.yaml", 3, ["--trainer.check_val_every_n_epoch", "1", *CUT_VAL], (0,))}


def time_train(config: str, epochs: int, data_root: str, threads: int, val_args: list[str]) -> float:
    """Seconds of one whole ``train.py`` run, started afresh in a temporary checkpoint folder."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "train.py", "--config", config, "--data.root", data_root, "--threads", str(threads),
               "--trainer.max_epochs", str(epochs), *val_args, "--trainer.limit_test_batches", "1",
               "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
               "--samples.every_n_epochs", "0", "--checkpoint_dir", tmp, "--run_name", "bench"]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        return time.perf_counter() - start


def floor(seconds: float = 0.5) -> dict | None:
    """Busy/idle ratio of a pinned one-thread kernel with the busy loop pinned to the other CPU (Linux)."""
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        return None
    code = ("import os, time, torch\n"
            "os.sched_setaffinity(0, {0}); torch.set_num_threads(1)\n"
            "x, w = torch.randn(3200, 150), torch.randn(150, 150)\n"
            "t = time.perf_counter()\n"
            "for _ in range(300): torch.sigmoid(x @ w)\n"
            "print(time.perf_counter() - t)")
    idle = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    hog = subprocess.Popen([sys.executable, "-c", "import os; os.sched_setaffinity(0, {1})\nwhile True: pass"])
    try:
        time.sleep(seconds)
        busy = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    finally:
        hog.kill()
        hog.wait()
    return {"model": "floor", "idle_s": idle, "busy_s": busy, "ratio": busy / idle}


def measure(data_root: str, repeats: int = 3) -> list[dict]:
    """Per model, ``repeats`` idle/busy pairs with the chosen threads (the machine's speed drifts by 10-30%
    within minutes: the row shows the pair with the median ratio) and one pair for each other setting."""
    rows = []
    for model, (config, epochs, val_args, settings) in RUNS.items():
        epochs = epochs or yaml.safe_load((ROOT / config).read_text())["trainer"]["check_val_every_n_epoch"]
        row = {"model": model, "epochs": epochs}
        for threads in settings:
            pairs = []
            for _ in range(repeats if threads == 0 else 1):
                idle = time_train(config, epochs, data_root, threads, val_args)
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                try:
                    pairs.append((idle, time_train(config, epochs, data_root, threads, val_args)))
                finally:
                    hog.kill()
                    hog.wait()
            pairs.sort(key=lambda pair: pair[1] / pair[0])
            row[f"idle_{threads}"], row[f"busy_{threads}"] = pairs[len(pairs) // 2]
            row[f"ratios_{threads}"] = [round(b / i, 3) for i, b in pairs]
        rows.append(row)
    return rows + [f for f in [floor()] if f]


def report(rows: list[dict]) -> str:
    lines = ["train.py on jsb (RNN 8 epochs, RNN-NADE 3, RNN-RBM 20: one validation period), seconds: idle / one core "
             "busy (ratio: the median pair's), chosen threads | 2 threads[; 1 thread]"]
    for r in rows:
        if r["model"] == "floor":
            lines.append(f"  floor: a pinned one-thread kernel {r['idle_s']:.2f} s idle, {r['busy_s']:.2f} s with the "
                         f"other CPU busy ({r['ratio']:.2f}x): what the hardware allows")
            continue
        spread = "" if len(r["ratios_0"]) < 2 else f"; pairs {', '.join(f'{x:.2f}' for x in r['ratios_0'])}"
        line = f"  {r['model']:10s} {r['idle_0']:6.1f} / {r['busy_0']:6.1f} ({r['busy_0'] / r['idle_0']:.2f}x{spread}"
        if "idle_2" in r:
            line = (f"{line}; target <= 1.2x) | {r['idle_2']:6.1f} / {r['busy_2']:6.1f} "
                    f"({r['busy_2'] / r['idle_2']:.2f}x)")
            if "idle_1" in r:
                line += (f"; one thread {r['idle_1']:.1f} / {r['busy_1']:.1f} ({r['busy_1'] / r['idle_1']:.2f}x): "
                         f"chosen busy / one thread idle {r['busy_0'] / r['idle_1']:.2f}x")
            lines.append(line)
        else:
            lines.append(f"{line}; validating every epoch, 20x the config's share: not the target's measure)")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="../shared/data/pickle")
    a = p.parse_args()
    print(report(measure(a.root)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
