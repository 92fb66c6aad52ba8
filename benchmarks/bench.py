"""Throughput, memory and model FLOP utilisation of the three models (``make bench``).

    python benchmarks/bench.py [--root ../shared/data/pickle] [--quick]

For RNN, RNN-RBM and RNN-NADE at their default sizes, on ``jsb`` and ``piano-midi``: training, evaluation
and sampling throughput in frames per second, peak resident memory of each phase, and for training the
model FLOP utilisation (MFU): the model's own FLOPs per frame (``flops_per_frame`` below, counted from
the shapes) times frames per second, over the fp32 matmul peak this process measures just before.
Then how training cost grows with batch size and with sequence length (chunked), and the time to
load each cached corpus; last, the speed-ups of ``benchmarks/speed_ratios.py``. Prints a table and
writes ``benchmarks/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import ais_speed  # noqa: E402
import busy  # noqa: E402
import speed_ratios  # noqa: E402

from musicrnn.ais import linear  # noqa: E402
from musicrnn.corpora import load_corpus  # noqa: E402
from musicrnn.data import collate  # noqa: E402
from musicrnn.models import RNN, RNNNADE, RNNRBM  # noqa: E402
from musicrnn.pianoroll import NUM_PITCHES  # noqa: E402

D = NUM_PITCHES


def flops_per_frame(model) -> float:
    """Model FLOPs to train on one frame (forward + backward), counted from the shapes.

    A matrix product of (n x k) by (k x m) is 2 n k m FLOPs forward and twice that backward, so a
    layer costs 3 times its forward FLOPs in training. Elementwise work is not counted.
    - recurrent core, tanh/relu, U units: forward ``2 (D U + U U)`` per frame;
    - RNN output: ``2 U D``;
    - RNN-NADE (H NADE units): bias maps ``2 U (D + H)``; the NADE forward ``4 D H`` (``a += v_i W_i``
      and ``V_i . sigm(a_i)`` for each pitch);
    - RNN-RBM (H RBM units), CD-k: bias maps ``2 U (D + H)``; two free energies ``2 * 2 D H`` (with
      backward); the k Gibbs steps ``k * 2 * 2 D H`` forward only (no gradient flows through them).
    """
    U = model.hparams.hidden
    core = 3 * 2 * (D * U + U * U)
    if isinstance(model, RNNNADE):
        H = model.hparams.nade_hidden
        return core + 3 * (2 * U * (D + H) + 4 * D * H)
    if isinstance(model, RNNRBM):
        H, k = model.hparams.rbm_hidden, model.hparams.cd_steps
        return core + 3 * (2 * U * (D + H) + 2 * 2 * D * H) + k * 2 * 2 * D * H
    return core + 3 * 2 * U * D


def matmul_peak(n: int = 1024, seconds: float = 1.0) -> float:
    """fp32 matmul FLOP/s this process reaches on square products (the MFU denominator): the better of
    MKL's (``a @ b``) and oneDNN's (``musicrnn.ais.linear``, which the RNN-RBM's products use; on the AMD
    development machine MKL takes its slower AVX2 path)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = 0.0
    for product in (lambda: a @ b, lambda: linear(a, b)):
        product()
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            product()
            reps += 1
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - start))
    return best


class PeakRSS:
    """Peak resident memory (MiB) of this process while the block runs, sampled every 5 ms."""

    def __enter__(self):
        self.proc, self.peak, self.done = psutil.Process(), 0, False
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while not self.done:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.done = True
        self.thread.join()
        self.mb = max(self.peak, self.proc.memory_info().rss) / 2 ** 20


def batches(rolls, batch_size: int, chunk_len: int | None):
    """Training batches as the data module makes them: chunked, sorted by length, padded."""
    if chunk_len:
        rolls = [c for r in rolls for c in torch.split(r, chunk_len)]
    rolls = sorted(rolls, key=len)
    return [collate(rolls[i:i + batch_size]) for i in range(0, len(rolls), batch_size)]


def timed_train(model, data, steps: int, warmup: int = 2, repeats: int = 3) -> float:
    """Median frames/s over ``repeats`` timings of ``steps`` optimizer steps after a warm-up."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step(b):
        cond, _ = model.core(b["x"])
        loss, _ = model.loss(cond, b["x"], b["mask"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return int(b["mask"].sum())

    for i in range(warmup):
        step(data[i % len(data)])
    rates = []
    for r in range(repeats):
        frames, start = 0, time.perf_counter()
        for i in range(steps):
            frames += step(data[(r * steps + i) % len(data)])
        rates.append(frames / (time.perf_counter() - start))
    return statistics.median(rates)


@torch.no_grad()
def timed_eval(model, data) -> float:
    model.eval()
    frames, start = 0, time.perf_counter()
    for b in data:
        cond, _ = model.core(b["x"])
        model.log_prob(cond, b["x"])
        frames += int(b["mask"].sum())
    return frames / (time.perf_counter() - start)


def timed_sample(model, num: int = 64, steps: int = 64) -> float:
    start = time.perf_counter()
    model.sample(num, steps)
    return num * steps / (time.perf_counter() - start)


def build(name: str):
    if name == "RNN":
        return RNN()
    if name == "RNNNADE":
        return RNNNADE()
    return RNNRBM()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "pickle"),
                   help="folder of the benchmark pickles (default: ../shared/data/pickle)")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "latest.json"))
    p.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    a = p.parse_args(argv)
    if not Path(a.root).is_dir():
        print(f"error: {a.root} not found; pass --root, the folder of the benchmark pickles", file=sys.stderr)
        return 2
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    steps = 3 if a.quick else 10
    peak = matmul_peak()
    records = []

    def add(**r):
        records.append(r)
        mfu = f" mfu={r['mfu']:.1%}" if "mfu" in r else ""
        print(f"{r['model']:8} {r['corpus']:10} {r['phase']:6} {r.get('note', ''):18} "
              f"{r['frames_per_s']:10.0f} frames/s  peak {r['peak_rss_mb']:7.0f} MiB{mfu}", flush=True)

    print(f"fp32 matmul peak of this process: {peak / 1e9:.1f} GFLOP/s on {torch.get_num_threads()} threads")
    corpora = {}
    for corpus in ("jsb", "piano-midi", "nottingham", "musedata", "bach"):
        root = None if corpus == "bach" else a.root
        load_corpus(corpus, root, a.data_dir)  # fill the cache, then time a cached load
        with PeakRSS() as mem:
            start = time.perf_counter()
            splits = load_corpus(corpus, root, a.data_dir)
            seconds = time.perf_counter() - start
        frames = sum(len(r) for s in splits.values() for r in s)
        add(model="-", corpus=corpus, phase="load", frames_per_s=frames / seconds, peak_rss_mb=mem.mb,
            seconds=seconds, note=f"{seconds:.2f} s cached")
        corpora[corpus] = {s: [torch.from_numpy(r) for r in v] for s, v in splits.items()}

    for corpus in ("jsb", "piano-midi"):
        train = batches(corpora[corpus]["train"], 16, chunk_len=100 if corpus == "piano-midi" else None)
        test = batches(corpora[corpus]["test"], 16, chunk_len=None)
        for name in ("RNN", "RNNNADE", "RNNRBM"):
            model = build(name)
            with PeakRSS() as mem:
                fps = timed_train(model, train, steps)
            flops = flops_per_frame(model)
            add(model=name, corpus=corpus, phase="train", frames_per_s=fps, peak_rss_mb=mem.mb,
                mfu=flops * fps / peak, flops_per_frame=flops)
            # RNN-RBM: evaluation runs AIS on every frame (musicrnn.ais defaults); time it on 256 frames.
            data = batches(corpora[corpus]["test"][:4], 4, chunk_len=64)[:1] if name == "RNNRBM" else test
            with PeakRSS() as mem:
                fps = timed_eval(model, data)
            add(model=name, corpus=corpus, phase="eval", frames_per_s=fps, peak_rss_mb=mem.mb)
            if corpus == "jsb":
                with PeakRSS() as mem:
                    fps = timed_sample(model)
                add(model=name, corpus=corpus, phase="sample", frames_per_s=fps, peak_rss_mb=mem.mb,
                    note="batch 64")

    # The classic Theano tutorial's RNN-RBM: 150 hidden, 100 recurrent, CD-15, chunks of 100 frames.
    tut = RNNRBM(hidden=100, rbm_hidden=150, cd_steps=15)
    with PeakRSS() as mem:
        fps = timed_train(tut, batches(corpora["jsb"]["train"], 16, chunk_len=100), steps)
    add(model="RNNRBM", corpus="jsb", phase="train", frames_per_s=fps, peak_rss_mb=mem.mb,
        mfu=flops_per_frame(tut) * fps / peak, note="tutorial sizes")

    # Scaling: batch size, and sequence length with chunking (RNN-NADE, piano-midi).
    model = RNNNADE()
    long = corpora["piano-midi"]["train"]
    for bs in (1, 8, 32, 128):
        with PeakRSS() as mem:
            fps = timed_train(model, batches(long, bs, chunk_len=100), max(2, steps // 2), warmup=1, repeats=1)
        add(model="RNNNADE", corpus="piano-midi", phase="train", frames_per_s=fps, peak_rss_mb=mem.mb,
            note=f"batch {bs} chunk 100", mfu=flops_per_frame(model) * fps / peak)
    joined = torch.cat(long)  # all training pieces end to end, so even 4096-frame sequences exist
    for length in (64, 256, 1024, 4096):
        data = batches(list(torch.split(joined, length))[:16], 8, chunk_len=None)
        with PeakRSS() as mem:
            fps = timed_train(model, data, 2, warmup=1, repeats=1)
        add(model="RNNNADE", corpus="piano-midi", phase="train", frames_per_s=fps, peak_rss_mb=mem.mb,
            note=f"batch 8 length {length}", mfu=flops_per_frame(model) * fps / peak)

    # Issue 13's targets, each measured side by side against its reference.
    ckpt = Path(__file__).resolve().parent.parent / "checkpoints" / "jsb" / "rnn_rbm.ckpt"
    ais = ais_speed.compare(str(ckpt), a.root, frames=96 if a.quick else 240, repeats=1 if a.quick else 3)
    print(ais_speed.report(ais), flush=True)
    records.append({"model": "RNNRBM", "corpus": "jsb", "phase": "ais", **ais})
    if not a.quick:
        rows = busy.measure(a.root)
        print(busy.report(rows), flush=True)
        records += [{"phase": "busy", **r} for r in rows]
    speed_ratios.report(a.root, quick=a.quick)  # NADE and tutorial-size RNN-RBM training speed-ups

    for r in records:
        r.update(threads=torch.get_num_threads(), matmul_peak_gflops=round(peak / 1e9, 2))
    Path(a.out).write_text(json.dumps(records, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
