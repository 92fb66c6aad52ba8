"""The RNN-RBM's AIS: today's default against the reference it replaced, side by side (``make bench``).

    python benchmarks/ais_speed.py [--ckpt checkpoints/jsb/rnn_rbm.ckpt] [--root ../shared/data/pickle]

On a fixed sample of the JSB test frames (every k-th), the per-frame log Z of the committed JSB RNN-RBM by
the reference (``ais_reference.py``: 100 runs x 300 temperatures from the visible biases) and by
``musicrnn.ais.ais_log_z`` with its default budget, each timed three times, alternating; prints the
speed-up (the median of the repeats' ratios) and the mean log Z of both with their standard errors. One
thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ais_reference import ais_log_z as reference_ais_log_z  # noqa: E402

from musicrnn.ais import AIS_RUNS, AIS_STEPS, ais_log_z  # noqa: E402
from musicrnn.models import load_model  # noqa: E402
from musicrnn.corpora import load_corpus  # noqa: E402
from musicrnn.data import collate  # noqa: E402


@torch.no_grad()
def frame_rbms(ckpt: str, root: str, frames: int):
    """``(b_v, b_h, W)`` of about ``frames`` frames spread evenly over the JSB test split."""
    model, _ = load_model(ckpt)
    test = load_corpus("jsb", root)["test"]
    b = collate([torch.from_numpy(r) for r in test])
    cond = model.core(b["x"])[0][b["mask"]]  # (all frames, hidden)
    cond = cond[::max(1, len(cond) // frames)]
    return model.to_bv(cond), model.to_bh(cond), model.W


def compare(ckpt: str, root: str, frames: int = 240, repeats: int = 3) -> dict:
    b_v, b_h, W = frame_rbms(ckpt, root, frames)
    runs, steps = AIS_RUNS, AIS_STEPS
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as evaluate runs it (musicrnn/threads.py: one thread for small models)
    times = {"reference": [], "default": []}
    est = {}
    with torch.no_grad():
        for r in range(repeats):
            for name, fn in (("reference", lambda: reference_ais_log_z(b_v, b_h, W, 100, 300)),
                             ("default", lambda: ais_log_z(b_v, b_h, W, runs, steps))):
                torch.manual_seed(r)
                start = time.perf_counter()
                est[name] = fn()
                times[name].append(time.perf_counter() - start)
    torch.set_num_threads(threads)
    ref_t, new_t = statistics.median(times["reference"]), statistics.median(times["default"])
    # The ratio of each repeat's pair, timed back to back, then their median: the VM's speed drifts by
    # 10-30% over a minute (one default ran in 1.6 s and, in the next run of this script, 2.1 s).
    speedup = statistics.median(r / n for r, n in zip(times["reference"], times["default"]))
    out = {"frames": len(b_v), "budget": f"{runs} runs x {steps} temperatures", "speedup": speedup,
           "reference_s": ref_t, "default_s": new_t}
    for name, (lz, var) in est.items():
        out[f"{name}_mean_log_z"] = float(lz.double().mean())
        out[f"{name}_stderr"] = float(var.sum().sqrt() / len(var))
    return out


def report(r: dict) -> str:
    return (f"AIS on {r['frames']} JSB test frames: default ({r['budget']}) {r['default_s']:.1f} s, reference "
            f"(100 runs x 300) {r['reference_s']:.1f} s: speed-up {r['speedup']:.1f}x (target 10x, must 5x); "
            f"mean log Z {r['default_mean_log_z']:.3f} +- {r['default_stderr']:.3f} against "
            f"{r['reference_mean_log_z']:.3f} +- {r['reference_stderr']:.3f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", default="checkpoints/jsb/rnn_rbm.ckpt")
    p.add_argument("--root", default="../shared/data/pickle")
    p.add_argument("--frames", type=int, default=240)
    a = p.parse_args()
    print(report(compare(a.ckpt, a.root, a.frames)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
