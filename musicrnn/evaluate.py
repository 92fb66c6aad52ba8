"""Evaluate a checkpoint on a corpus split and print one line.

    python -m musicrnn.evaluate checkpoints/jsb/rnn.ckpt --dataset jsb --root ../shared/data/pickle
    -> nll=8.1234 frame_acc=0.2345 frames=4725

``nll`` is nats per time step over every frame of the split (log-likelihood = -nll). For the RNN-RBM
it is an AIS estimate and the line adds ``nll_stderr`` (its standard error over AIS runs). Nothing is
written to disk.
"""

from __future__ import annotations

import contextlib
import sys

import lightning as L

from musicrnn.cli import ArgumentParser, run_command
from musicrnn.corpora import DATASETS
from musicrnn.data import PianorollDataModule
from musicrnn.errors import MusicrnnError
from musicrnn.models import load_model


def evaluate(ckpt: str, dataset: str, root: str | None = None, split: str = "test", data_dir: str = "data",
             batch_size: int = 16, ais_runs: int | None = None, ais_steps: int | None = None,
             progress: bool = True) -> dict:
    """``{"nll", "nll_stderr", "frame_acc", "frames"}`` of a checkpoint on one split."""
    model, data_hp = load_model(ckpt)
    if ais_runs is not None:
        model.hparams.ais_runs = ais_runs
    if ais_steps is not None:
        model.hparams.ais_steps = ais_steps
    settings = data_hp if data_hp.get("dataset") == dataset else {}  # the checkpoint's preprocessing
    dm = PianorollDataModule.from_settings({**settings, "dataset": dataset, "root": root, "data_dir": data_dir,
                                            "batch_size": batch_size, "chunk_len": None, "augment_transpose": 0})
    dm.setup()
    dm.splits["test"] = dm.splits[split]  # the test loop reads "test"
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=progress)
    with contextlib.redirect_stdout(sys.stderr):  # progress bar on stderr: stdout is the result line
        results = trainer.test(model, datamodule=dm, verbose=False)[0]
    return {"nll": results["test/nll"], "nll_stderr": model.test_nll_se, "frame_acc": results["test/frame_acc"],
            "frames": sum(len(r) for r in dm.splits[split])}


def run(argv: list[str]) -> int:
    p = ArgumentParser(prog="python -m musicrnn.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt", help="checkpoint file (.ckpt)")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", help="folder of '<Name>.pickle' (benchmarks) or the MIDI folder/.zip")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--data-dir", default="data", help="downloads and parse cache")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--ais-runs", type=int, help="RNN-RBM: AIS runs per frame (default: the checkpoint's)")
    p.add_argument("--ais-steps", type=int, help="RNN-RBM: AIS intermediate temperatures")
    a = p.parse_args(argv)
    for name in ("batch_size", "ais_runs", "ais_steps"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            raise MusicrnnError(f"--{name.replace('_', '-')} must be at least 1")
    r = evaluate(a.ckpt, a.dataset, a.root, a.split, a.data_dir, a.batch_size, a.ais_runs, a.ais_steps)
    line = f"nll={r['nll']:.4f} frame_acc={r['frame_acc']:.4f} frames={r['frames']}"
    if r["nll_stderr"]:
        line += f" nll_stderr={r['nll_stderr']:.4f}"
    print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(run, argv)


if __name__ == "__main__":
    sys.exit(main())
