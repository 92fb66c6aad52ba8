"""Run the ablation of Bengio, Boulanger-Lewandowski & Pascanu (2013) on one corpus and write its table.

    python scripts/ablation.py --corpus jsb --jobs 2   # every configs/ablation/*.yaml at learning rates 0.1, 0.3
    python scripts/ablation.py --corpus nottingham configs/ablation/rnn_sgd.yaml configs/ablation/rnn_sgd_c.yaml
    python scripts/ablation.py --corpus jsb --lrs 0.05 0.1 0.2 --jobs 2   # a learning-rate search per row

Each config is one row: ``<model>_sgd[_<letters>].yaml``, C = gradient clipping, L = leaky integration,
R = rectifiers, M = simplified Nesterov momentum, read over the rows' shared ``configs/ablation/base.yaml``
(``config_files``). Each row is a fresh ``train.py`` run (its old checkpoint and log folders are removed
first only with ``--fresh``: otherwise a run with a ``summary.json`` is reused and a stopped one resumes from its
last checkpoint) on one CPU thread, trained until ``val/nll`` has not improved for ``--patience`` epochs (the
same for every row; at most ``--max_epochs``); the row's numbers come from the run's
``checkpoints/ablation/<run>/summary.json``. The table goes to ``results/ablation_<corpus>.md``;
``--table_only`` writes it from the runs finished so far and names the others.

The search budget is the same for every row: each row is trained once per learning rate (``--lrs``,
default 0.1 and 0.3, the search of RESULTS.md's tables) and the one with the best validation NLL is the
row's figure (test numbers never choose). A rate at which a row diverges (the non-finite guard stops it,
or its validation score is NaN) is part of the search: the row keeps its other rates and says which
diverged. ``--jobs`` runs that many trainings at once, one thread each (two on a 2-core machine).

    python scripts/ablation.py --corpus nottingham --on configs/nottingham/rnn.yaml --jobs 2

runs issue 15's techniques instead, each on top of a chosen configuration: the config alone (the "as chosen"
row) and the config with each ``configs/techniques/*.yaml`` over it, at the config's own settings (its
optimizer, epochs and early stopping); the table goes to ``results/techniques_<corpus>_<config>.md``. Its
gradient clipping, if any, is done by ``musicrnn.callbacks.GradientClipping`` at the same threshold (and
without clipping, a GradientClipping at threshold inf measures only), so that every row logs its gradient norm.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # a script, not an installed package: musicrnn is imported from the repository
from musicrnn import plot  # noqa: E402
from musicrnn.guard import DIVERGED  # noqa: E402
MODELS = {"rnn": "RNN", "nade": "RNN-NADE", "rbm": "RNN-RBM"}
BASE = ROOT / "configs" / "ablation" / "base.yaml"
TECHNIQUES = ROOT / "configs" / "techniques"
CHOSEN = "as chosen"  # the row of a technique table that is the chosen config alone
PAPER_LRS = (0.1, 0.3)  # the learning-rate search of every paper row in RESULTS.md


def config_files(config: Path, on: Path | None = None) -> list[Path]:
    """The ``--config`` files of a row, in order: the shared base (or the chosen config ``on``), then the
    row's own settings over it (none for the chosen config's own row)."""
    return [BASE, config] if on is None else [on] if config == on else [on, config]


def row_configs() -> list[Path]:
    """Every row config: RNN first, then by techniques (plain SGD first)."""
    order = lambda c: (list(MODELS).index(c.stem.split("_")[0]), len(c.stem))  # noqa: E731
    return sorted((c for c in BASE.parent.glob("*.yaml") if c != BASE), key=order)
CORPORA = ("jsb", "nottingham", "musedata", "piano-midi")


@functools.cache  # the chosen config is read for every row
def read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def row_name(config: Path, on: Path | None = None) -> tuple[str, str]:
    """``nade_sgd_crm.yaml`` -> ``("RNN-NADE", "SGD+CRM")``; over ``on=configs/jsb/rnn_nade.yaml``,
    ``techniques/layernorm.yaml`` -> ``("RNN-NADE", "+LAYERNORM")`` and ``on`` itself -> ``("RNN-NADE", "as chosen")``."""
    if on is not None:  # the model's name from its class: musicrnn.models.RNNNADE -> RNN-NADE
        model = read_yaml(on)["model"]["class_path"].rsplit(".", 1)[-1].replace("RNN", "RNN-", 1).rstrip("-")
        return model, CHOSEN if config == on else "+" + config.stem.upper()
    model, *row = config.stem.split("_")
    return MODELS[model], "+".join(part.upper() for part in row)


def run_name(config: Path, args, lr: float | None) -> str:
    if args.on is not None:
        name = f"technique-{args.corpus}-{args.on.stem}-" + ("chosen" if config == args.on else config.stem)
    else:
        name = f"ablation-{args.corpus}-{config.stem}"
    return name + ("" if lr is None else f"-lr{lr:g}")


def outcome(args, name: str) -> dict | None:
    """A finished run's ``summary.json``, or ``{"diverged": why, ...}`` for a run that the non-finite guard
    stopped or whose best validation score is not finite (a learning rate too large for its row: part of
    the search, not retried), or None."""
    folder = ROOT / args.checkpoint_dir / name
    if (folder / "summary.json").exists():
        summary = json.loads((folder / "summary.json").read_text())
        if not math.isfinite(summary["val/nll"]):  # early stopping saw a NaN score: diverged all the same
            return {"diverged": f"val/nll {summary['val/nll']} after {summary['epochs']} epochs", **summary}
        return summary
    if (folder / DIVERGED).exists():
        return {"diverged": (folder / DIVERGED).read_text().strip()}
    return None


def launch(config: Path, args, lr: float | None) -> tuple[str, list[str], subprocess.Popen | None]:
    """Start one training (or reuse its finished summary); returns its name, command and process."""
    name = run_name(config, args, lr)
    if args.fresh:
        for old in (ROOT / args.checkpoint_dir / name, ROOT / args.log_dir / name):
            shutil.rmtree(old, ignore_errors=True)
    cmd = command(config, args, name, lr)
    if (done := outcome(args, name)) is not None:
        print(f"{name}: done before, {'diverged' if 'diverged' in done else 'summary reused'}", flush=True)
        return name, cmd, None
    log = ROOT / args.log_dir / f"{name}.log"
    log.parent.mkdir(exist_ok=True)
    print(f"{name}: {shlex.join(cmd)}  (log: {os.path.relpath(log, ROOT)})", flush=True)
    with open(log, "a") as out:  # the machine is shared: one thread
        proc = subprocess.Popen([sys.executable, *cmd[1:]], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return name, cmd, proc


def stop_all(running: dict) -> None:
    """Stop the trainings still running (each resumes from its last checkpoint on the next call)."""
    for _, _, proc in running.values():
        if proc is not None:
            proc.terminate()


def run_all(jobs: list[tuple[Path, float | None]], args) -> dict[tuple[Path, float | None], dict]:
    """Train every (config, learning rate) pair, ``args.jobs`` at a time; their summaries, each with its
    command and learning rate added."""
    if args.table_only:  # only the finished runs; the others are left out of the table, and named
        jobs = [job for job in jobs if outcome(args, run_name(job[0], args, job[1])) is not None]
    pending, running, done = list(jobs), {}, {}
    while pending or running:
        while pending and len(running) < args.jobs:
            job = pending.pop(0)
            name, cmd, proc = launch(job[0], args, job[1])
            running[job] = (name, cmd, proc)
        for job, (name, cmd, proc) in list(running.items()):
            if proc is not None and proc.poll() is None:
                continue
            del running[job]
            diverged = (ROOT / args.checkpoint_dir / name / DIVERGED).exists()  # train.py: the guard stopped it
            if proc is not None and proc.returncode and not diverged:
                stop_all(running)
                sys.exit(f"{name} failed (exit {proc.returncode}); see {args.log_dir}/{name}.log")
            summary = outcome(args, name)
            lr = "row's own" if job[1] is None else f"{job[1]:g}"
            done[job] = {"command": shlex.join(cmd), "lr": lr, **summary}
        time.sleep(1)
    return done


def command(config: Path, args, name: str, lr: float | None = None) -> list[str]:
    """The ``train.py`` command of one row: the config on ``args.corpus`` and the ``||dL/du_t||`` plot every
    10 epochs (the gradient picture, ``runs/<run>/``) appended to the config's callbacks; a paper row also
    gets early stopping on ``val/nll`` (a technique row keeps its chosen config's own) and its gradient
    clipping measured (see the module's text)."""
    configs = [a for c in config_files(config, args.on) for a in ("--config", os.path.relpath(c, ROOT))]
    if args.on is None:
        stopping = ["--trainer.max_epochs", str(args.max_epochs),
                    "--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping",
                    "--trainer.callbacks.monitor=val/nll", f"--trainer.callbacks.patience={args.patience}"]
    else:
        clip = (read_yaml(args.on).get("trainer") or {}).get("gradient_clip_val")
        stopping = ["--trainer.gradient_clip_val", "null", "--trainer.callbacks+=musicrnn.callbacks.GradientClipping",
                    f"--trainer.callbacks.threshold={clip if clip else '.inf'}"]
    return ["python", "train.py", *configs, "--data.dataset", args.corpus,
            "--data.root", args.root, "--run_name", name, "--checkpoint_dir", args.checkpoint_dir,
            *(["--log_dir", args.log_dir] if args.log_dir != "runs" else []),
            "--eval_train", "true", *stopping,
            "--trainer.callbacks+=musicrnn.callbacks.HiddenGradientPlot", "--trainer.callbacks.every_n_epochs=10",
            "--save_every_n_steps", "200", "--trainer.accelerator", args.accelerator,
            "--trainer.enable_progress_bar", "false", "--samples.every_n_epochs", "0",
            *(["--optimizer.init_args.lr", f"{lr:g}"] if lr is not None else []),
            *(["--trainer.max_time", args.max_time] if args.max_time else [])]


def choose(results: dict, configs: list[Path], lrs: list,
           on: Path | None = None) -> tuple[list[tuple[str, str, dict]], list[str]]:
    """Per row, ``(model, row, summary)`` of the run of the best validation NLL over its learning rates (test
    numbers never choose); and the names of the rows that diverged at every rate tried (no table row)."""
    rows, lost = [], []
    for config in configs:
        tried = [results[(config, lr)] for lr in lrs if (config, lr) in results]
        trained = [s for s in tried if "diverged" not in s]
        if not trained:  # a row not run yet (--table_only), or diverged at every rate
            if tried:
                lost.append(" ".join(row_name(config, on)))
            continue
        best = min(trained, key=lambda s: s["val/nll"])
        notes = [f"{', '.join(s['lr'] for s in tried if 'diverged' in s)} diverged"] if len(trained) < len(tried) else []
        if len(tried) < len(lrs):  # a search not finished yet says so
            notes.append(f"of {len(tried)} of {len(lrs)} rates")
        if notes:
            best = {**best, "lr": f"{best['lr']} ({'; '.join(notes)})"}
        rows.append((*row_name(config, on), best))
    return rows, lost


def figures(rows: list[tuple[str, str, dict]], out_dir: Path, stem: str, md_dir: Path, log_dir: Path) -> list[str]:
    """The gradient pictures of the chosen rows, per model, one panel per row: ``train/grad_norm`` per step
    (log scale) with ``train/clip_fraction``, and each row's last ``||dL/du_t||`` plot. Returns the
    Markdown lines, for a file in ``md_dir``, that show them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rel = lambda p: Path(os.path.relpath(p, md_dir)).as_posix()  # noqa: E731
    lines = []
    for model in dict.fromkeys(m for m, _, _ in rows):
        mine = [(f"{model} {row}, lr {s['lr']}", log_dir / Path(s["model_checkpoint"]).parent.name)
                for m, row, s in rows if m == model]
        name = f"{stem}-{model.lower()}"
        norms = plot.grad_norm_panels(mine, out_dir / f"{name}-grad_norm.png")
        lines.append(f"![{model}: gradient norm (blue, log scale) and clipped fraction (orange) per row]({rel(norms)})")
        if hidden := plot.hidden_grad_panels(mine, out_dir / f"{name}-hidden_grad.png"):
            lines.append(f"![{model}: ||dL/du_t|| against t at each row's last plotted epoch]({rel(hidden)})")
        lines.append("")
    return lines


def table(rows: list[tuple[str, str, dict]], max_epochs: int) -> list[str]:
    lines = ["| model | row | lr | valid log-lik. | train log-lik. | test log-lik. | test ACC % | epochs | stopped by "
             "| train time | command |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, row, s in rows:
        stop = s.get("stopped_by") or ("max_epochs" if s["epochs"] >= max_epochs else "?")
        lines.append(f"| {model} | {row} | {s['lr']} | {-s['val/nll']:.3f} | {s['train/log_likelihood']:.3f} "
                     f"| {s['test/log_likelihood']:.3f} | {100 * s['test/frame_acc']:.2f} | {s['epochs']} | {stop} "
                     f"| {s['train_seconds']:.0f} s | `{s['command']}` |")
    return lines


def verdicts(rows: list[tuple[str, str, dict]], reference: str = "SGD") -> list[str]:
    """Per model and row: better or worse than that model's ``reference`` row (plain SGD, or the chosen
    config), on validation and on test."""
    lines = []
    for model in dict.fromkeys(m for m, _, _ in rows):
        mine = {row: s for m, row, s in rows if m == model}
        ref = mine.get(reference)
        if ref is None:
            continue
        for row, s in mine.items():
            if row == reference:
                continue
            dv, dt = ref["val/nll"] - s["val/nll"], s["test/log_likelihood"] - ref["test/log_likelihood"]
            word = ("no change" if max(abs(dv), abs(dt)) < 5e-4 else "helps" if dv > 0 and dt > 0 else
                    "hurts" if dv < 0 and dt < 0 else "mixed")
            lines.append(f"- {model} {row}: {word} ({dv:+.3f} valid, {dt:+.3f} test nats/frame against {reference}).")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="*", type=Path,
                   help="default: configs/ablation/*.yaml, or with --on configs/techniques/*.yaml")
    p.add_argument("--on", type=Path, help="a chosen config (configs/<corpus>/<model>.yaml): run the techniques "
                   "over it at its own settings (--patience and --max_epochs do not apply)")
    p.add_argument("--corpus", default="jsb", choices=CORPORA, help="the benchmark whose rows to run")
    p.add_argument("--patience", type=int, default=20, help="epochs without a better val/nll before a row stops")
    p.add_argument("--max_epochs", type=int, default=1000)
    p.add_argument("--max_time", help="cap per training, DD:HH:MM:SS (a capped row says so in the table)")
    p.add_argument("--lrs", type=float, nargs="+", help="learning rates to try per row (default: "
                   f"{' and '.join(map(str, PAPER_LRS))} for the paper's rows, as in RESULTS.md; with --on the "
                   "config's own)")
    p.add_argument("--jobs", type=int, default=1, help="trainings at once, one thread each")
    p.add_argument("--accelerator", default="cpu", help="Lightning accelerator of each training (default cpu: one "
                   "thread per row, as every row here was run; rows on a GPU are untried)")
    p.add_argument("--table_only", action="store_true",
                   help="train nothing: write the table from the runs that have finished, naming the others")
    p.add_argument("--fresh", action="store_true", help="delete the rows' old runs instead of reusing them")
    p.add_argument("--root", default="../shared/data/pickle", help="folder holding the benchmark pickles")
    p.add_argument("--checkpoint_dir", default="checkpoints/ablation")
    p.add_argument("--log_dir", default="runs", help="where the runs' log folders and train.py outputs go")
    p.add_argument("--out", type=Path, help="default: results/ablation_<corpus>.md")
    p.add_argument("--figures", type=Path, default=ROOT / "docs" / "ablation",
                   help="folder for the gradient pictures of the chosen rows")
    args = p.parse_args(argv)
    if args.on is not None:
        if not args.on.is_file():
            p.error(f"--on {args.on}: no such config file")
        if not isinstance((read_yaml(args.on).get("model") or {}).get("class_path"), str):
            p.error(f"--on {args.on}: not a chosen config (no model class_path); e.g. configs/jsb/rnn.yaml")
        args.on = args.on.resolve()
    if args.patience < 1 or args.max_epochs < 1 or args.jobs < 1:
        p.error("--patience, --max_epochs and --jobs must be >= 1")
    if args.table_only and args.fresh:
        p.error("--table_only trains nothing: it cannot start --fresh")
    if args.lrs and not all(0 < lr < math.inf for lr in args.lrs):
        p.error("--lrs must be positive and finite")
    stem = f"ablation_{args.corpus}" if args.on is None else f"techniques_{args.corpus}_{args.on.stem}"
    args.out = args.out or ROOT / "results" / f"{stem}.md"
    configs = [c.resolve() for c in args.configs]
    if args.on is None:
        configs = configs or row_configs()
    else:  # the chosen config alone is every technique table's reference row
        configs = [args.on, *(configs or sorted(TECHNIQUES.glob("*.yaml")))]
    lrs = args.lrs or ([None] if args.on else list(PAPER_LRS))
    start = time.time()
    results = run_all([(c, lr) for c in configs for lr in lrs], args)
    rows, lost = choose(results, configs, lrs, args.on)
    search = (f"each row trained at learning rates {', '.join(f'{lr:g}' for lr in lrs)} and the best "
              "validation NLL kept" if lrs != [None] else "each row at its config's learning rate")
    if args.on is None:
        title = f"Ablation on {args.corpus}: training techniques of Bengio, Boulanger-Lewandowski & Pascanu (2013)"
        rows_are = ["the validation, training and test splits; ACC is the test frame accuracy. C = gradient clipping, "
                    "L = leaky", "integration, R = rectifiers, M = simplified Nesterov momentum; each config file "
                    "says its settings. A row stops when val/nll has not improved", f"for {args.patience} epochs "
                    f"(at most {args.max_epochs}" + (f", or after {args.max_time}" if args.max_time else "") + ")"]
    else:
        on = Path(os.path.relpath(args.on, ROOT)).as_posix()
        title = f"Issue 15's techniques on {args.corpus}, each over `{on}`"
        rows_are = ["the validation, training and test splits; ACC is the test frame accuracy. The row "
                    f"'{CHOSEN}' is `{on}` alone,", "each other row that config with `configs/techniques/<row>.yaml` "
                    "over it (its header says what it sets);", "every row trains as the config says (optimizer, "
                    "epochs, early stopping" + (f", at most {args.max_time}" if args.max_time else "") + ")"]
    total = sum(s.get("train_seconds", 0) for s in results.values())  # a run the guard stopped has no summary
    missing = [run_name(c, args, lr) for c in configs for lr in lrs if (c, lr) not in results]
    text = [
        f"# {title}",
        "",
        "Written by `python scripts/ablation.py " + " ".join(argv if argv is not None else sys.argv[1:]) + "`;",
        "each row is the run of the command in its last column (from the repository root), on one CPU thread.",
        f"Search: {search}. Log-likelihoods are nats per time step of the best checkpoint by validation NLL, on",
        *rows_are[:-1],
        rows_are[-1] + f"; the {len(results)} trainings took {total / 60:.0f} min in all ("
        + ("the table written from finished runs" if args.table_only else
           f"{args.jobs} at a time, this call {(time.time() - start) / 60:.0f} min")
        + "). The gradient picture of a row: `runs/<run>/hidden_grad_epoch*.png`",
        "(||dL/du_t|| against t), and `train/grad_norm` and `train/clip_fraction` in its `runs/<run>/metrics.csv`.",
        "",
        *table(rows, args.max_epochs),
        "",
        *([f"Not run yet (train them with the same command without `--table_only`): {', '.join(missing)}.", ""]
          if missing else []),
        *([f"Diverged at every learning rate tried (a non-finite loss or validation score): {', '.join(lost)}.", ""]
          if lost else []),
        *verdicts(rows, "SGD" if args.on is None else CHOSEN),
        "",
        *(figures(rows, args.figures, f"{stem.split('_')[0]}-{args.corpus}", args.out.parent, ROOT / args.log_dir)
          if args.figures else []),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
