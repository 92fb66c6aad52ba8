"""Learning curves of a run as one PNG, and the gradient pictures of several runs side by side.

    python -m musicrnn.plot runs/jsb-rnn_nade            # writes runs/jsb-rnn_nade/curves.png
    python -m musicrnn.plot runs/a runs/b --out cmp.png   # several runs on the same axes

Reads the ``metrics.csv`` that Lightning's CSVLogger writes and draws one panel per quantity that the
run logged: log-likelihood (train and validation, per epoch), gradient norm and clipped fraction,
momentum and learning rate (per step).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from musicrnn.atomic import atomic_write
from musicrnn.cli import ArgumentParser, run_command
from musicrnn.errors import MusicrnnError

PANELS = [  # (title, y label, metric names, x axis)
    ("Log-likelihood", "nats per frame", ("train/nll", "val/nll"), "epoch"),
    ("Gradient norm (before clipping)", "L2 norm", ("train/grad_norm",), "step"),
    ("Clipped steps", "fraction", ("train/clip_fraction",), "step"),
    ("Momentum", "mu", ("train/momentum",), "step"),
    ("Learning rate", "lr", ("train/lr",), "step"),
]


def read_metrics(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """``metrics.csv`` -> ``{metric: [(epoch or step, value), ...]}`` for every logged metric."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        raise MusicrnnError(f"{path} not found (a run folder of the CSV logger holds metrics.csv)")
    series: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="") as f:
        try:
            for row in csv.DictReader(f):
                for name, value in row.items():
                    if value and name not in ("epoch", "step"):
                        x = float(row["epoch"] if name.endswith("/nll") or name.startswith("val/") else row["step"])
                        series.setdefault(name, []).append((x, float(value)))
        except (KeyError, TypeError, ValueError) as e:  # no epoch/step column, a short row, text for a number
            raise MusicrnnError(f"{path} is not a metrics.csv of Lightning's CSV logger ({e!r})") from None
    return series


def runs_to_png(run_dirs: list[Path], out: Path, titles: tuple[str, ...] | None = None) -> Path:
    """Draw the learning curves of one or more runs into ``out`` (PNG, 150 dpi): the panels named in
    ``titles`` (``PANELS``' first field), or every one the runs logged."""
    plt = _pyplot()
    runs = {d.name: read_metrics(d) for d in run_dirs}
    panels = [p for p in PANELS if any(m in s for s in runs.values() for m in p[2])
              and (titles is None or p[0] in titles)]
    if not panels:
        raise MusicrnnError(f"{', '.join(map(str, run_dirs))}: no metrics to draw in metrics.csv")
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), squeeze=False)
    for ax, (title, ylabel, metrics, xlabel) in zip(axes[:, 0], panels):
        for run, series in runs.items():
            for m in metrics:
                if m in series:
                    xs, ys = zip(*series[m])
                    if m.endswith("/nll"):  # the papers report log-likelihood: -nll
                        ys = [-y for y in ys]
                    name = m.replace("/nll", " log-likelihood")
                    label = name if len(runs) == 1 else f"{run}: {name}"
                    ax.plot(xs, ys, label=label, linewidth=1.2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=150))
    plt.close(fig)
    return out


def _pyplot():
    """matplotlib's pyplot on the Agg backend (process-wide, so chosen only when drawing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(plt, n: int, cols: int = 4):
    """A figure of ``n`` panels, ``cols`` to a row, the unused ones blank; returns ``(fig, axes)``."""
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(4 * cols, 3 * -(-n // cols)), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def _save(plt, fig, out: Path) -> Path:
    fig.tight_layout()
    atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return out


def grad_norm_panels(runs: list[tuple[str, Path]], out: Path) -> Path:
    """One panel per ``(title, run folder)``: ``train/grad_norm`` per step (log scale) and, on a right axis,
    ``train/clip_fraction``, as ``GradientClipping`` logs them; drawn into ``out`` (PNG)."""
    plt = _pyplot()
    fig, axes = _grid(plt, len(runs))
    for ax, (title, run) in zip(axes, runs):
        m = read_metrics(run)
        if "train/grad_norm" in m:
            ax.semilogy(*zip(*m["train/grad_norm"]), linewidth=0.6, label="gradient norm (before clipping)")
        if "train/clip_fraction" in m:
            twin = ax.twinx()
            twin.plot(*zip(*m["train/clip_fraction"]), color="tab:orange", linewidth=0.8)
            twin.set_ylim(0, 1)
            twin.set_ylabel("clipped steps (fraction)", color="tab:orange", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    return _save(plt, fig, out)


def hidden_grad_panels(runs: list[tuple[str, Path]], out: Path) -> Path | None:
    """Each run's last ``hidden_grad_epoch<N>.png`` (``HiddenGradientPlot``'s ``||dL/du_t||`` picture) side
    by side in ``out``; None, and no file, when no run has one (runs shorter than its ``every_n_epochs``)."""
    last = [(title, max(run.glob("hidden_grad_epoch*.png"), key=lambda p: int(p.stem[17:]), default=None))
            for title, run in runs]
    last = [(title, p) for title, p in last if p is not None]
    if not last:
        return None
    plt = _pyplot()
    import matplotlib.image

    fig, axes = _grid(plt, len(last))
    for ax, (title, p) in zip(axes, last):
        ax.imshow(matplotlib.image.imread(p))
        ax.axis("off")
        ax.set_title(f"{title} ({p.stem[12:]})", fontsize=9)
    return _save(plt, fig, out)


def run(argv: list[str]) -> int:
    p = ArgumentParser(prog="python -m musicrnn.plot", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders (runs/<run_name>)")
    p.add_argument("--out", type=Path, help="PNG to write (default: <first run>/curves.png)")
    a = p.parse_args(argv)
    print(runs_to_png(a.runs, a.out or a.runs[0] / "curves.png"))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(run, argv)


if __name__ == "__main__":
    sys.exit(main())
