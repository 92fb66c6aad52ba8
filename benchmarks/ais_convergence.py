"""How the RNN-RBM's AIS estimate of log Z moves with the number of intermediate temperatures.

    python benchmarks/ais_convergence.py checkpoints/jsb/rnn_rbm.ckpt [--frames 200] [--runs 24]

Takes about ``--frames`` frames spread over the JSB test set (``ais_speed.frame_rbms``), estimates each frame's ``log Z`` with
``--runs`` AIS runs at 30 .. 1000 temperatures (same seed), and prints the mean estimate, the mean
standard error over runs and the time. AIS underestimates ``log Z`` on average, less with more
temperatures, so the mean creeping up and levelling off shows where the bias has become negligible.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ais_speed import frame_rbms  # noqa: E402

from musicrnn.ais import AIS_RUNS, ais_log_z  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt")
    p.add_argument("--root", default="../shared/data/pickle", help="folder of 'JSB Chorales.pickle'")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--runs", type=int, default=AIS_RUNS)
    p.add_argument("--steps", type=int, nargs="+", default=[30, 100, 300, 1000])
    a = p.parse_args()
    b_v, b_h, W = frame_rbms(a.ckpt, a.root, a.frames)
    with torch.no_grad():
        print(f"{'temperatures':>12} {'mean log Z':>12} {'mean stderr':>12} {'seconds':>8}")
        for steps in a.steps:
            torch.manual_seed(0)
            start = time.perf_counter()
            log_z, var = ais_log_z(b_v, b_h, W, a.runs, steps)
            print(f"{steps:>12} {log_z.double().mean().item():>12.4f} {var.sqrt().mean().item():>12.4f} "
                  f"{time.perf_counter() - start:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
