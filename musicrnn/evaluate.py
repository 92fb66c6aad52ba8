"""Evaluate a checkpoint on a corpus split and print one line.

    python -m musicrnn.evaluate checkpoints/jsb/rnn.ckpt --dataset jsb --root ../shared/data/pickle
    -> nll=8.1234 frame_acc=0.2345 frames=4725

``nll`` is nats per time step over every frame of the split (log-likelihood = -nll). For the RNN-RBM
it is an AIS estimate and the line adds ``nll_stderr`` (its standard error over AIS runs) and, with
``--ais-bias N``, ``ais_bias``: how much the nll of a fixed sample of N frames rises when AIS uses ten
times the temperatures (AIS reads log Z low, so the nll low; a figure near 0 says the budget suffices).
Its random numbers (AIS, the frame accuracy's mode-finding chains) are fresh each run unless ``--seed``
fixes them. Nothing is written to disk.
"""

from __future__ import annotations

import sys

import torch
from rich.console import Console
from rich.progress import track

from musicrnn.ais import AIS_RUNS, AIS_STEPS
from musicrnn.cli import ArgumentParser, run_command, seed as seed_type
from musicrnn.corpora import DATASETS
from musicrnn.data import PianorollDataModule
from musicrnn.errors import MusicrnnError
from musicrnn.metrics import FrameAccuracy, FrameNLL
from musicrnn.models import RNNRBM, load_model
from musicrnn.threads import free_cores


def evaluate(ckpt: str, dataset: str, root: str | None = None, split: str = "test", data_dir: str = "data",
             batch_size: int = 16, ais_runs: int | None = None, ais_steps: int | None = None,
             ais_bias_frames: int = 0, progress: bool = True, seed: int | None = None) -> dict:
    """``{"nll", "nll_stderr", "frame_acc", "frames"}`` of a checkpoint on one split, plus ``"ais_bias"``
    and ``"ais_bias_stderr"`` when ``ais_bias_frames`` > 0 (RNN-RBM only). ``seed``: seeds torch's generators
    first (the same answer again on the same machine and threads); None draws a fresh estimate."""
    model, data_hp = load_model(ckpt)
    torch.set_num_threads(free_cores())  # as train.py's validation and test: see musicrnn/threads.py
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    if seed is not None:
        torch.manual_seed(seed)
    settings = data_hp if data_hp.get("dataset") == dataset else {}  # the checkpoint's preprocessing
    dm = PianorollDataModule.from_settings({**settings, "dataset": dataset, "root": root, "data_dir": data_dir,
                                            "batch_size": batch_size, "chunk_len": None, "augment_transpose": 0})
    dm.setup()
    is_rbm = isinstance(model, RNNRBM)
    budget = {"ais_runs": ais_runs or AIS_RUNS, "ais_steps": ais_steps or AIS_STEPS} if is_rbm else {}
    loader = dm.eval_dataloader(split)
    batches = track(loader, description=f"{split} of {dataset}", console=Console(stderr=True),
                    disable=not progress)
    nll, acc = FrameNLL().to(device), FrameAccuracy().to(device)
    with torch.no_grad():
        for batch in batches:
            model.score({k: v.to(device) for k, v in batch.items()}, nll, acc, **budget)
    result = {"nll": float(nll.compute()), "nll_stderr": float(nll.standard_error()),
              "frame_acc": float(acc.compute()), "frames": int(nll.frames)}
    if ais_bias_frames and is_rbm:
        result.update(ais_bias(model, dm.splits[split], ais_bias_frames, device, **budget))
    return result


@torch.no_grad()
def ais_bias(model: RNNRBM, rolls: list[torch.Tensor], frames: int, device, ais_runs: int,
             ais_steps: int) -> dict:
    """The finite-temperature bias of AIS on a fixed sample of about ``frames`` frames (every k-th frame of
    the split, in order): their nll with ``10 * ais_steps`` temperatures minus their nll with ``ais_steps``,
    and the standard error of that difference. The standard error over runs misses this bias."""
    total = sum(len(r) for r in rolls)
    every = max(1, total // frames)
    cond, x = [], []
    for r in rolls:
        c, _ = model.core(r[None].to(device, torch.float32))  # (1, time, hidden)
        cond.append(c[0])
        x.append(r.to(device, torch.float32))
    cond, x = torch.cat(cond)[::every][None], torch.cat(x)[::every][None]  # (1, frames, .)
    logp, var = model.log_prob(cond, x, ais_runs, ais_steps)
    logp_long, var_long = model.log_prob(cond, x, ais_runs, 10 * ais_steps)
    n = x.shape[1]
    return {"ais_bias": float((logp - logp_long).double().mean()),
            "ais_bias_stderr": float((var + var_long).double().sum().sqrt() / n), "ais_bias_sample": n}


def run(argv: list[str]) -> int:
    p = ArgumentParser(prog="python -m musicrnn.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt", help="checkpoint file (.ckpt)")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", help="folder of '<Name>.pickle' (benchmarks) or the MIDI folder/.zip")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--data-dir", default="data", help="downloads and parse cache")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--ais-runs", type=int, help=f"RNN-RBM: AIS runs per frame (default {AIS_RUNS})")
    p.add_argument("--ais-steps", type=int, help=f"RNN-RBM: AIS temperatures (default {AIS_STEPS})")
    p.add_argument("--ais-bias", type=int, default=0, metavar="N",
                   help="RNN-RBM: also re-run a fixed sample of N frames with 10x the temperatures and print "
                        "the difference (ais_bias) as the estimate's bias")
    p.add_argument("--seed", type=seed_type, help="fix the random numbers (RNN-RBM's AIS and mode finding) to repeat a "
                                            "run; default: a fresh estimate each run")
    a = p.parse_args(argv)
    for name in ("batch_size", "ais_runs", "ais_steps"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            raise MusicrnnError(f"--{name.replace('_', '-')} must be at least 1")
    if a.ais_bias < 0:
        raise MusicrnnError("--ais-bias must be 0 or more")
    r = evaluate(a.ckpt, a.dataset, a.root, a.split, a.data_dir, a.batch_size, a.ais_runs, a.ais_steps, a.ais_bias,
                 seed=a.seed)
    line = f"nll={r['nll']:.4f} frame_acc={r['frame_acc']:.4f} frames={r['frames']}"
    if r["nll_stderr"]:
        line += f" nll_stderr={r['nll_stderr']:.4f}"
    if "ais_bias" in r:
        line += f" ais_bias={r['ais_bias']:.4f} ais_bias_stderr={r['ais_bias_stderr']:.4f} " \
                f"ais_bias_frames={r['ais_bias_sample']}"
    print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(run, argv)


if __name__ == "__main__":
    sys.exit(main())
