"""Run the ablation of Bengio, Boulanger-Lewandowski & Pascanu (2013) on one corpus and write its table.

    python scripts/ablation.py --corpus jsb         # every configs/ablation/*.yaml, one after another
    python scripts/ablation.py --corpus nottingham configs/ablation/rnn_sgd.yaml configs/ablation/rnn_sgd_c.yaml

Each config is one row: ``<model>_sgd[_<letters>][_<technique>].yaml``, C = gradient clipping, L = leaky
integration, R = rectifiers, M = simplified Nesterov momentum, and one row per technique of issue 15 (layer
or weight normalisation, variational dropout, ...), read over the rows' shared ``configs/ablation/base.yaml``
(``config_files``). Each row is a fresh ``train.py`` run (its old checkpoint and log folders are removed
first, so it never resumes) on one CPU thread, trained until ``val/nll`` has not improved for
``--patience`` epochs (the same for every row; at most ``--max_epochs``); the row's numbers come from the
run's ``checkpoints/ablation/<run>/summary.json``. The table goes to ``results/ablation_<corpus>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"rnn": "RNN", "nade": "RNN-NADE", "rbm": "RNN-RBM"}
BASE = ROOT / "configs" / "ablation" / "base.yaml"


def config_files(config: Path) -> list[Path]:
    """The ``--config`` files of a row, in order: the shared base, then the row's own settings over it."""
    return [BASE, config]


def row_configs() -> list[Path]:
    """Every row config: RNN first, then by techniques (plain SGD first)."""
    order = lambda c: (list(MODELS).index(c.stem.split("_")[0]), len(c.stem))  # noqa: E731
    return sorted((c for c in BASE.parent.glob("*.yaml") if c != BASE), key=order)
CORPORA = ("jsb", "nottingham", "musedata", "piano-midi")


def row_name(config: Path) -> tuple[str, str]:
    """``nade_sgd_crm.yaml`` -> ``("RNN-NADE", "SGD+CRM")``."""
    model, *row = config.stem.split("_")
    return MODELS[model], "+".join(part.upper() for part in row)


def run(config: Path, args) -> dict:
    """Train one config from scratch; returns its summary with the command and wall time added."""
    name = f"ablation-{args.corpus}-{config.stem}"
    for old in (ROOT / args.checkpoint_dir / name, ROOT / "runs" / name):
        shutil.rmtree(old, ignore_errors=True)
    cmd = command(config, args, name)
    log = ROOT / "runs" / f"{name}.log"
    log.parent.mkdir(exist_ok=True)
    print(f"{config.name}: {shlex.join(cmd)}  (log: {log.relative_to(ROOT)})", flush=True)
    start = time.time()
    with open(log, "w") as out:  # the machine is shared: one thread
        done = subprocess.run([sys.executable, *cmd[1:]], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    if done.returncode:
        sys.exit(f"{config.name} failed (exit {done.returncode}); see {log}")
    summary = json.loads((ROOT / args.checkpoint_dir / name / "summary.json").read_text())
    return {**summary, "command": shlex.join(cmd), "wall_seconds": time.time() - start}


def command(config: Path, args, name: str) -> list[str]:
    """The ``train.py`` command of one row: the config on ``args.corpus``, early stopping on ``val/nll``
    and the ``||dL/du_t||`` plot every 10 epochs (the gradient picture, ``runs/<run>/``) appended to the
    config's callbacks."""
    configs = [a for c in config_files(config) for a in ("--config", str(c.relative_to(ROOT)))]
    return ["python", "train.py", *configs, "--data.dataset", args.corpus,
            "--data.root", args.root, "--run_name", name, "--checkpoint_dir", args.checkpoint_dir,
            "--eval_train", "true", "--trainer.max_epochs", str(args.max_epochs),
            "--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping",
            "--trainer.callbacks.monitor=val/nll", f"--trainer.callbacks.patience={args.patience}",
            "--trainer.callbacks+=musicrnn.callbacks.HiddenGradientPlot", "--trainer.callbacks.every_n_epochs=10"]


def table(rows: list[tuple[Path, dict]]) -> list[str]:
    lines = ["| model | row | train log-lik. | test log-lik. | test ACC % | train time | wall time | epochs "
             "| command |", "|---|---|---|---|---|---|---|---|---|"]
    for config, s in rows:
        model, row = row_name(config)
        lines.append(f"| {model} | {row} | {s['train/log_likelihood']:.3f} | {s['test/log_likelihood']:.3f} "
                     f"| {100 * s['test/frame_acc']:.2f} | {s['train_seconds']:.0f} s | {s['wall_seconds']:.0f} s "
                     f"| {s['epochs']} | `{s['command']}` |")
    return lines


def verdicts(rows: list[tuple[Path, dict]]) -> list[str]:
    """Per model: is its best row (test log-likelihood) at least as good as its plain SGD row?"""
    lines = []
    for model in dict.fromkeys(row_name(c)[0] for c, _ in rows):
        mine = [(row_name(c)[1], s["test/log_likelihood"]) for c, s in rows if row_name(c)[0] == model]
        best = max(mine, key=lambda r: r[1])
        sgd = dict(mine).get("SGD")
        if sgd is not None:
            ok = "at least as good as" if best[1] >= sgd else "WORSE than"
            lines.append(f"- {model}: best row {best[0]} ({best[1]:.3f}) is {ok} plain SGD ({sgd:.3f}).")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="*", type=Path, help="default: configs/ablation/*.yaml")
    p.add_argument("--corpus", default="jsb", choices=CORPORA, help="the benchmark whose rows to run")
    p.add_argument("--patience", type=int, default=20, help="epochs without a better val/nll before a row stops")
    p.add_argument("--max_epochs", type=int, default=1000)
    p.add_argument("--root", default="../shared/data/pickle", help="folder holding the benchmark pickles")
    p.add_argument("--checkpoint_dir", default="checkpoints/ablation")
    p.add_argument("--out", type=Path, help="default: results/ablation_<corpus>.md")
    args = p.parse_args(argv)
    if args.patience < 1 or args.max_epochs < 1:
        p.error("--patience and --max_epochs must be >= 1")
    args.out = args.out or ROOT / "results" / f"ablation_{args.corpus}.md"
    configs = [c.resolve() for c in args.configs] or row_configs()
    start = time.time()
    rows = [(c, run(c, args)) for c in configs]
    text = [
        f"# Ablation on {args.corpus}: training techniques of Bengio, Boulanger-Lewandowski & Pascanu (2013)",
        "",
        "Written by `python scripts/ablation.py`; each row is one run of the command in its last column",
        "(from the repository root), on one CPU thread of a shared machine. Log-likelihoods are nats per",
        "time step of the best checkpoint by validation NLL, on the training and test splits; ACC is the",
        "test frame accuracy. C = gradient clipping, L = leaky integration, R = rectifiers, M = simplified",
        "Nesterov momentum; the other rows name one technique of issue 15 on top of SGD+C; each config",
        f"file says its settings. Each row stopped when val/nll had not improved for {args.patience} epochs",
        f"(at most {args.max_epochs}); the whole ablation took {(time.time() - start) / 60:.0f} min. The gradient",
        "picture of a row: `runs/<run>/hidden_grad_epoch*.png` (||dL/du_t|| against t), and `train/grad_norm`",
        "and `train/clip_fraction` in its log.",
        "",
        *table(rows),
        "",
        *verdicts(rows),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
