"""How the RNN-RBM's AIS estimate of log Z moves with the number of intermediate temperatures.

    python benchmarks/ais_convergence.py checkpoints/jsb/rnn_rbm.ckpt [--frames 200] [--runs 100]

Takes the first ``--frames`` frames of the JSB test set, estimates each frame's ``log Z`` with
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
from musicrnn.models import load_model  # noqa: E402
from musicrnn.corpora import load_corpus  # noqa: E402
from musicrnn.data import collate  # noqa: E402
from musicrnn.ais import AIS_RUNS, ais_log_z  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt")
    p.add_argument("--root", default="../shared/data/pickle", help="folder of 'JSB Chorales.pickle'")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--runs", type=int, default=AIS_RUNS)
    p.add_argument("--steps", type=int, nargs="+", default=[30, 100, 300, 1000])
    a = p.parse_args()
    model, _ = load_model(a.ckpt)
    test = load_corpus("jsb", a.root)["test"]
    batch = collate([torch.from_numpy(r) for r in test[:8]])
    with torch.no_grad():
        cond = model.core(batch["x"])[0][batch["mask"]][:a.frames]  # (frames, hidden)
        b_v, b_h = model.to_bv(cond), model.to_bh(cond)
        print(f"{'temperatures':>12} {'mean log Z':>12} {'mean stderr':>12} {'seconds':>8}")
        for steps in a.steps:
            torch.manual_seed(0)
            start = time.perf_counter()
            log_z, var = ais_log_z(b_v, b_h, model.W, a.runs, steps)
            print(f"{steps:>12} {log_z.double().mean().item():>12.4f} {var.sqrt().mean().item():>12.4f} "
                  f"{time.perf_counter() - start:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
