"""Training on a busy machine: whole ``train.py`` runs on JSB, idle and with one core taken (``make bench``).

    python benchmarks/busy.py [--root ../shared/data/pickle]

For each model's JSB config (a few epochs, validation and test cut to a batch or two) the wall time of
``train.py`` idle and while ``python -c "while True: pass"`` keeps one core busy, with ``--threads 0``
(chosen by ``musicrnn/threads.py``) and with ``--threads 2`` (PyTorch's default on this 2-core machine,
what ``train.py`` used before), then the busy/idle ratio. Target: within 1.2x with the chosen threads.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = {"RNN": ("configs/jsb/rnn.yaml", 8), "RNNNADE": ("configs/jsb/rnn_nade.yaml", 3),
        "RNNRBM": ("configs/jsb/rnn_rbm.yaml", 3)}


def time_train(config: str, epochs: int, data_root: str, threads: int) -> float:
    """Seconds of one whole ``train.py`` run, started afresh in a temporary checkpoint folder."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "train.py", "--config", config, "--data.root", data_root, "--threads", str(threads),
               "--trainer.max_epochs", str(epochs), "--trainer.check_val_every_n_epoch", "1",
               "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "1",
               "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
               "--samples.every_n_epochs", "0", "--checkpoint_dir", tmp, "--run_name", "bench"]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        return time.perf_counter() - start


def measure(data_root: str) -> list[dict]:
    rows = []
    for model, (config, epochs) in RUNS.items():
        row = {"model": model, "epochs": epochs}
        for threads in (0, 2):
            row[f"idle_{threads}"] = time_train(config, epochs, data_root, threads)
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                row[f"busy_{threads}"] = time_train(config, epochs, data_root, threads)
            finally:
                hog.kill()
                hog.wait()
        rows.append(row)
    return rows


def report(rows: list[dict]) -> str:
    lines = ["train.py on jsb, seconds: idle / one core busy (ratio), chosen threads | 2 threads"]
    for r in rows:
        lines.append(f"  {r['model']:8s} {r['idle_0']:6.1f} / {r['busy_0']:6.1f} ({r['busy_0'] / r['idle_0']:.2f}x, "
                     f"target <= 1.2x) | {r['idle_2']:6.1f} / {r['busy_2']:6.1f} ({r['busy_2'] / r['idle_2']:.2f}x)")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="../shared/data/pickle")
    a = p.parse_args()
    print(report(measure(a.root)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
