"""The results table: promote a trained model to ``checkpoints/<corpus>/<model>.ckpt``, and re-measure every
promoted checkpoint into RESULTS.md beside the published figures.

    python scripts/results.py promote checkpoints/jsb-rnn_nade --corpus jsb --model rnn_nade \\
        --config configs/jsb/rnn_nade.yaml
    python scripts/results.py promote --ckpt old.ckpt --corpus jsb --model rnn --epochs 93 --train-seconds 134
    python scripts/results.py check                  # what `make results` runs

``promote`` copies the run's slim ``model.ckpt`` and writes ``checkpoints/<corpus>/<model>.json`` beside it:
the training facts (validation figures of the chosen checkpoint, parameters, epochs, training time, the
train command) and the test figures as training first measured them. It draws the run's learning curves to
``docs/curves/<corpus>-<model>.png`` and, for an RNN-NADE, samples a piano roll into
``docs/samples/<corpus>-rnn_nade.png`` (and ``.mid``). A checkpoint kept without its run folder is promoted
with ``--ckpt`` and the facts given as options.

``check`` re-evaluates every promoted checkpoint on its test split (``musicrnn.evaluate.evaluate``; the
RNN-RBM with ``ais_bias_frames=500``) in two worker processes of one thread each, rewrites the tables
between RESULTS.md's ``<!-- results:begin -->`` and ``<!-- results:end -->`` and prints, per row, where
the new test log-likelihood or frame accuracy differs from the committed one. Exit code 0 either way.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # a script, not an installed package: musicrnn is imported from the repository

import torch  # noqa: E402

from musicrnn import generate, plot  # noqa: E402
from musicrnn.atomic import atomic_write  # noqa: E402
from musicrnn.cli import ArgumentParser, run_command  # noqa: E402
from musicrnn.corpora import BENCHMARKS  # noqa: E402
from musicrnn.errors import MusicrnnError  # noqa: E402
from musicrnn.evaluate import evaluate  # noqa: E402
from musicrnn.models import load_model  # noqa: E402

CORPORA = BENCHMARKS  # corpus -> its name, which is also its pickle's: "jsb" -> "JSB Chorales"
MODELS = {"rnn": ("RNN", "RNN"), "rnn_rbm": ("RNNRBM", "RNN-RBM"), "rnn_nade": ("RNNNADE", "RNN-NADE")}  # class, label
AIS_BIAS_FRAMES = 500
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
EXACT_TOLERANCE = 0.001  # nats per frame, and frame accuracy as a fraction
RBM_SIGMAS = 3  # AIS estimates differ from run to run: a difference counts beyond 3 standard errors
AS_TRAINED = "(as trained)"  # marks a test figure that train.py measured and `check` has not yet

# ../shared/REFERENCES.md: test log-likelihood (nats per time step) and ACC % per corpus, as printed.
PUBLISHED = [
    ("RNN (2012)", {"piano-midi": ("-8.37", "19.33"), "nottingham": ("-4.46", "62.93"),
                    "musedata": ("-8.13", "23.25"), "jsb": ("-8.71", "28.46")}),
    ("RNN-RBM (2012)", {"piano-midi": ("-7.09", "28.92"), "nottingham": ("-2.39", "75.40"),
                        "musedata": ("-6.01", "34.02"), "jsb": ("-6.27", "33.12")}),
    ("RNN-NADE, SGD (2012)", {"piano-midi": ("-7.48", "20.69"), "nottingham": ("-2.91", "64.95"),
                              "musedata": ("-6.74", "24.91"), "jsb": ("-5.83", "32.11")}),
    ("RNN-NADE, HF (2012)", {"piano-midi": ("-7.05", "23.42"), "nottingham": ("-2.31", "71.50"),
                             "musedata": ("-5.60", "32.60"), "jsb": ("-5.56", "32.50")}),
    ("DMM-Aug-NADE (Krishnan 2017)", {"piano-midi": ("-7.048", None), "nottingham": ("-2.305", None),
                                      "musedata": ("-6.049", None), "jsb": ("-5.118", None)}),
]
BEST_INDEPENDENT = {  # the best published RNN with independent per-pitch outputs, per corpus
    "piano-midi": ("RRU, independent outputs (Zakovskis 2021)", "-7.38"),
    "nottingham": ("RRU, independent outputs (Zakovskis 2021)", "-2.92"),
    "musedata": ("GRU, independent outputs (Chung 2014)", "-5.99"),
    "jsb": ("RRU, independent outputs (Zakovskis 2021)", "-7.72"),
}


# ---- promote ----------------------------------------------------------------------------------------------

def run_folders(run_dir: Path) -> tuple[Path, Path]:
    """``checkpoints/<run>`` or ``runs/<run>`` -> ``(checkpoint folder, log folder)``, as ``train.py`` lays
    them out from the working directory."""
    ckpt_dir = run_dir if (run_dir / "model.ckpt").exists() else Path("checkpoints") / run_dir.name
    log_dir = run_dir if (run_dir / "metrics.csv").exists() else Path("runs") / run_dir.name
    if not (ckpt_dir / "model.ckpt").is_file() or not (ckpt_dir / "summary.json").is_file():
        raise MusicrnnError(f"{run_dir} is not a finished train.py run (no model.ckpt and summary.json in "
                            f"{ckpt_dir})")
    return ckpt_dir, log_dir


def best_validation(log_dir: Path) -> dict:
    """The epoch of the lowest ``val/nll`` in the run's ``metrics.csv`` with its nll and frame accuracy."""
    series = plot.read_metrics(log_dir)
    if "val/nll" not in series:
        raise MusicrnnError(f"{log_dir}/metrics.csv holds no val/nll")
    epoch, nll = min(series["val/nll"], key=lambda p: p[1])
    acc = dict(series.get("val/frame_acc", [])).get(epoch)
    return {"valid_nll": nll, "valid_frame_acc": acc, "best_epoch": int(epoch) + 1}


def config_command(config: Path | None, log_dir: Path | None) -> str:
    """The train command of a config: its header line ``# python train.py ...`` if it has one."""
    if config is None:  # the run's own resolved config, as LightningCLI saved it
        return f"python train.py --config {log_dir / 'config.yaml'}"
    for line in config.read_text().splitlines():
        if line.startswith("# python train.py"):
            return line[2:].strip()
    return f"python train.py --config {config} --data.root ../shared/data/pickle"


def promote(a) -> dict:
    repo = Path(a.repo)
    name = f"{a.corpus}-{a.model}"
    if a.config is not None and not a.config.is_file():
        raise MusicrnnError(f"--config {a.config} not found")
    if a.ckpt is not None:
        source, log_dir, summary = a.ckpt, None, {}
    else:
        ckpt_dir, log_dir = run_folders(a.run_dir)
        source, summary = ckpt_dir / "model.ckpt", json.loads((ckpt_dir / "summary.json").read_text())
    model, data_hp = load_model(source)
    if type(model).__name__ != MODELS[a.model][0]:
        raise MusicrnnError(f"{source} holds a {type(model).__name__}, not --model {a.model}")
    if data_hp.get("dataset") != a.corpus:
        raise MusicrnnError(f"{source} was trained on {data_hp.get('dataset')!r}, not --corpus {a.corpus}")

    facts = {"corpus": a.corpus, "model": a.model, "parameters": sum(p.numel() for p in model.parameters())}
    if log_dir is not None:
        facts |= best_validation(log_dir)
        facts["valid_nll"] = summary.get("val/nll", facts["valid_nll"])  # the score that chose the checkpoint
        facts |= {"epochs": summary["epochs"], "train_seconds": summary["train_seconds"],
                  "command": config_command(a.config, log_dir),
                  "test": {"nll": summary["test/nll"], "nll_stderr": summary["test/nll_stderr"],
                           "frame_acc": summary["test/frame_acc"]},
                  "source": f"train.py run {source.parent.name}: its summary.json and metrics.csv"}
    else:
        facts |= {"valid_nll": None, "valid_frame_acc": None, "epochs": None, "train_seconds": None,
                  "command": config_command(a.config, None) if a.config else None,
                  "test": {"nll": None, "nll_stderr": None, "frame_acc": None},
                  "source": f"checkpoint {source} without its run folder"}
    # Facts given by hand win, with a run too: a resumed run's summary.json counts only its last session's time.
    hand = {"valid_nll": a.valid_nll, "valid_frame_acc": a.valid_acc, "epochs": a.epochs,
            "train_seconds": a.train_seconds, "command": a.command}
    test = {"nll": a.test_nll, "nll_stderr": a.test_nll_stderr, "frame_acc": a.test_acc}
    facts |= {k: v for k, v in hand.items() if v is not None}
    facts["test"] |= {k: v for k, v in test.items() if v is not None}
    given = [k for k, v in hand.items() if v is not None] + [f"test {k}" for k, v in test.items() if v is not None]
    if given:
        facts["source"] += f"; given by hand: {', '.join(given)}"
    if a.measure_valid:  # e.g. no training log: the validation figures measured now, as train.py scores them
        valid = evaluate(str(source), a.corpus, a.root, split="valid", progress=False)
        facts |= {"valid_nll": valid["nll"], "valid_frame_acc": valid["frame_acc"]}
        facts["source"] += "; validation measured by evaluate() after training"
    if a.note:
        facts["note"] = a.note

    dest = repo / "checkpoints" / a.corpus / f"{a.model}.ckpt"
    data = source.read_bytes()
    atomic_write(dest, lambda f: f.write(data))
    facts["curves"], curves_log = None, log_dir
    if a.curves_from is not None:  # a checkpoint older than the run logs: a rerun of its config shows the curves
        rerun_ckpt, curves_log = run_folders(a.curves_from)
        rerun = json.loads((rerun_ckpt / "summary.json").read_text())
        facts["curves_from"] = {"run": curves_log.name, "valid_nll": rerun.get("val/nll"), "epochs": rerun["epochs"]}
    if curves_log is not None:
        facts["curves"] = f"docs/curves/{name}.png"
        plot.runs_to_png([curves_log], repo / facts["curves"], titles=("Log-likelihood",))
    facts["sample"] = None
    if a.model == "rnn_nade":  # the one model whose samples are exact and cheap
        facts["sample"] = sample_roll(dest, repo, name, a.sample_steps, a.sample_seed)
    text = json.dumps(facts, indent=2) + "\n"
    atomic_write(dest.with_suffix(".json"), lambda f: f.write(text.encode()))
    print(f"{source} -> {dest} (+ .json)" + (f", {facts['curves']}" if facts["curves"] else "")
          + (f", {facts['sample']['png']}" if facts["sample"] else ""))
    return facts


def sample_roll(ckpt: Path, repo: Path, name: str, steps: int, seed: int) -> dict:
    """One piano roll (PNG and MIDI) sampled by ``generate.py`` with a fixed seed into ``docs/samples/``."""
    with tempfile.TemporaryDirectory() as tmp:
        args = ["--ckpt", str(ckpt), "--num", "1", "--steps", str(steps), "--seed", str(seed), "--out", tmp]
        if generate.main(args):
            raise MusicrnnError(f"sampling from {ckpt} failed (see above)")
        for ext in (".png", ".mid"):
            data = (Path(tmp) / f"sample-seed{seed}-01{ext}").read_bytes()
            atomic_write(repo / "docs" / "samples" / f"{name}{ext}", lambda f: f.write(data))
    rel = ckpt.relative_to(repo) if ckpt.is_relative_to(repo) else ckpt
    return {"png": f"docs/samples/{name}.png", "midi": f"docs/samples/{name}.mid",
            "command": f"python generate.py --ckpt {rel} --num 1 --steps {steps} --seed {seed} --out docs/samples/"}


# ---- check ------------------------------------------------------------------------------------------------

def promoted(repo: Path) -> dict[tuple[str, str], dict]:
    """``{(corpus, model): facts}`` of every ``checkpoints/<corpus>/<model>.ckpt`` with its ``.json``."""
    found = {}
    for corpus in CORPORA:
        for model in MODELS:
            ckpt = repo / "checkpoints" / corpus / f"{model}.ckpt"
            if ckpt.is_file():
                meta = ckpt.with_suffix(".json")
                found[corpus, model] = json.loads(meta.read_text()) if meta.is_file() else {}
    return found


def measure(repo: Path, rows: list[tuple[str, str]], root: str, data_dir: str, workers: int) -> dict:
    """Test figures of each ``(corpus, model)`` checkpoint, ``workers`` processes of one thread each."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))  # read by torch in each fresh worker
    try:
        # A fresh process per checkpoint, seeded 0: an RNN-RBM's AIS figure does not depend on what ran before.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1,
                                 initializer=torch.random.manual_seed, initargs=(0,)) as pool:
            jobs = {(c, m): pool.submit(evaluate, str(repo / "checkpoints" / c / f"{m}.ckpt"), c, root, "test",
                                        data_dir, ais_bias_frames=AIS_BIAS_FRAMES if m == "rnn_rbm" else 0,
                                        progress=False)
                    for c, m in sorted(rows, key=lambda r: r[1] != "rnn_rbm")}  # the slow ones first
            return {row: job.result() for row, job in jobs.items()}
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def committed_figures(text: str) -> dict[tuple[str, str], dict]:
    """The measured figures of the "ours" rows in RESULTS.md's tables: ``{(corpus, model): {"ll", "stderr",
    "acc", "bias", "bias_stderr"}}`` (acc as a fraction; absent figures None)."""
    labels = {f"{label} (ours)": model for model, (_, label) in MODELS.items()}
    figures, corpus = {}, None
    for line in text[text.find(BEGIN):text.find(END)].splitlines():
        if m := re.match(r"#+ .*\(`([\w-]+)`\)", line):
            corpus = m.group(1)
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in labels and len(cells) > 4:
            ll = re.match(r"(-?\d+\.\d+)(?: ± (\d+\.\d+))?", cells[2])
            bias = re.match(r"([-+]?\d+\.\d+) ± (\d+\.\d+)", cells[3]) or re.match("()()", "")
            acc = re.match(r"\d+\.\d+", cells[4])
            if ll:
                figures[corpus, labels[cells[0]]] = {
                    "ll": float(ll.group(1)), "stderr": number(ll.group(2)),
                    "acc": float(acc.group()) / 100 if acc else None,
                    "bias": number(bias.group(1)), "bias_stderr": number(bias.group(2)),
                    "as_trained": AS_TRAINED in cells[2], "facts": training_cells(line)}
    return figures


def training_cells(line: str) -> tuple[str, ...]:
    """An "ours" row's cells that come from its ``.json`` (validation, parameters, epochs, training time):
    if they changed, the committed test figures belong to a checkpoint promoted before."""
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    return cells[1], *cells[5:8]


def number(text: str | None) -> float | None:
    return float(text) if text else None


def differences(row: tuple[str, str], new: dict, old: dict | None) -> list[str]:
    """What about the row changed beyond the tolerance: exact models by more than 0.001, the RNN-RBM's
    AIS log-likelihood by more than 3 standard errors of the difference and 0.001 (its frame accuracy is
    sampled)."""
    if old is None:
        return ["no committed figure"]
    said, ll = [], -new["nll"]
    if row[1] == "rnn_rbm":
        sigma = math.hypot(new["nll_stderr"], old["stderr"] or 0.0)
        if abs(ll - old["ll"]) > max(RBM_SIGMAS * sigma, EXACT_TOLERANCE):  # not below the table's rounding
            said.append(f"test log-lik. {old['ll']:.3f} -> {ll:.3f}, beyond {RBM_SIGMAS} standard errors ({sigma:.3f})")
        return said
    if abs(ll - old["ll"]) > EXACT_TOLERANCE:
        said.append(f"test log-lik. {old['ll']:.3f} -> {ll:.3f}")
    if old["acc"] is None or abs(new["frame_acc"] - old["acc"]) > EXACT_TOLERANCE:
        said.append(f"test ACC {fmt(old['acc'], '.2f', 100)} -> {100 * new['frame_acc']:.2f} %")
    return said


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def fmt(value, spec: str, scale: float = 1) -> str:
    return "–" if value is None else format(scale * value, spec)


def ours_row(label: str, facts: dict | None, fig: dict | None) -> str:
    """One "ours" row; ``fig`` are the measured test figures (``ll`` etc.), None before any measurement."""
    if facts is None:
        return f"| {label} (ours) | not trained yet | | | | | | | | |"
    # The RNN-RBM's figure is an AIS estimate: its "± 0.000" stays (read back, it is 0.0); the others are exact.
    sampled = label == MODELS["rnn_rbm"][1] and fig is not None and fig["stderr"] is not None
    test = "–" if fig is None else f"{fig['ll']:.3f}" + (f" ± {fig['stderr']:.3f}" if sampled else "") \
        + (f" {AS_TRAINED}" if fig.get("as_trained") else "")
    bias = "–" if fig is None or fig["bias"] is None else f"{fig['bias']:+.3f} ± {fig['bias_stderr']:.3f}"
    valid = fmt(facts.get("valid_nll"), ".3f", -1)
    curves = f"[png]({facts['curves']})" if facts.get("curves") else "–"
    if facts.get("curves") and facts.get("curves_from"):
        curves = f"[png of a rerun]({facts['curves']})"
    command = f"`{facts['command']}`" if facts.get("command") else "–"
    return (f"| {label} (ours) | {valid} | {test} | {bias} | {fmt(fig and fig['acc'], '.2f', 100)} "
            f"| {fmt(facts.get('parameters'), ',')} | {fmt(facts.get('epochs'), 'd')} "
            f"| {duration(facts.get('train_seconds'))} | {curves} | {command} |")


def render(promoted_rows: dict, figures: dict) -> str:
    """The tables between the markers: per corpus our three models, then the published rows."""
    out = [BEGIN]
    for corpus, title in CORPORA.items():
        out += ["", f"### {title} (`{corpus}`)", "",
                "| model | valid log-lik. | test log-lik. | AIS bias | test ACC % | parameters | epochs | training "
                "| curves | command |", "|---|---|---|---|---|---|---|---|---|---|"]
        out += [ours_row(label, promoted_rows.get((corpus, m)), figures.get((corpus, m)))
                for m, (_, label) in MODELS.items()]
        for label, by_corpus in PUBLISHED:
            ll, acc = by_corpus[corpus]
            out.append(f"| {label} | – | {ll} | – | {acc or '–'} | – | – | – | – | – |")
        label, ll = BEST_INDEPENDENT[corpus]
        out.append(f"| {label} | – | {ll} | – | – | – | – | – | – | – |")
        sample = (promoted_rows.get((corpus, "rnn_nade")) or {}).get("sample")
        if sample:
            out += ["", f"![A piano roll sampled from the {title} RNN-NADE]({sample['png']}) "
                        f"([MIDI]({sample['midi']})): `{sample['command']}`"]
    return "\n".join(out + ["", END])


def check(a) -> int:
    repo, results = Path(a.repo), Path(a.results or Path(a.repo) / "RESULTS.md")
    if not Path(a.root).is_dir():
        raise MusicrnnError(f"data root {a.root} not found: pass --root, the folder holding the benchmark pickles")
    text = results.read_text() if results.exists() else f"# Results\n\n{BEGIN}\n{END}\n"
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise MusicrnnError(f"{results} needs one {BEGIN} ... {END} pair around the tables")
    rows = promoted(repo)
    chosen = [r for r in rows if r[1] in a.models and r[0] in a.corpora]
    for corpus in sorted({c for c, _ in chosen}):  # said now, not by a worker after the others' minutes
        if not (Path(a.root) / f"{CORPORA[corpus]}.pickle").is_file():
            raise MusicrnnError(f"{Path(a.root) / CORPORA[corpus]}.pickle not found: --root holds the benchmark pickles")
    print(f"evaluating {len(chosen)} checkpoint(s) on their test splits"
          + "".join(f"{', ' if i else ': '}{c}/{m}" for i, (c, m) in enumerate(chosen)), flush=True)
    new = measure(repo, chosen, a.root, a.data_dir, a.workers)
    labels = {m: label for m, (_, label) in MODELS.items()}
    old = {row: fig for row, fig in committed_figures(text).items()  # not a replaced checkpoint's figures
           if row in rows and fig["facts"] == training_cells(ours_row(labels[row[1]], rows[row], None))}
    figures = dict(old)  # rows not re-measured keep their committed figures, else training's own
    for row, facts in rows.items():
        if row not in figures and facts.get("test", {}).get("nll") is not None:
            t = facts["test"]
            figures[row] = {"ll": -t["nll"], "stderr": t.get("nll_stderr"), "acc": t.get("frame_acc"),
                            "bias": None, "bias_stderr": None, "as_trained": True}
    for row, r in new.items():
        figures[row] = {"ll": -r["nll"], "stderr": r["nll_stderr"], "acc": r["frame_acc"],
                        "bias": r.get("ais_bias"), "bias_stderr": r.get("ais_bias_stderr")}
        said = differences(row, r, old.get(row))
        print(f"{row[0]}/{row[1]}: " + ("; ".join(said) if said else "as committed")
              + f" (test log-lik. {-r['nll']:.4f}, ACC {100 * r['frame_acc']:.2f} %)")
    for row in sorted(set(rows) - set(new)):
        kept = "as committed" if row in old else "as trained" if row in figures else "none yet"
        print(f"{row[0]}/{row[1]}: not re-measured; figures {kept}")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    updated = text[:start] + render(rows, figures) + text[end:]
    atomic_write(results, lambda f: f.write(updated.encode()))
    print(f"wrote {results}")
    return 0


def run(argv: list[str]) -> int:
    p = ArgumentParser(prog="python scripts/results.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", default=str(ROOT), help="where checkpoints/, docs/ and RESULTS.md are (default: here)")
    verbs = p.add_subparsers(dest="verb", required=True)
    pr = verbs.add_parser("promote", help="copy a trained model to checkpoints/<corpus>/<model>.ckpt with its facts")
    pr.add_argument("run_dir", nargs="?", type=Path, help="the run: checkpoints/<run> (or runs/<run>)")
    pr.add_argument("--ckpt", type=Path, help="a checkpoint without its run folder, instead of run_dir")
    pr.add_argument("--corpus", required=True, choices=CORPORA)
    pr.add_argument("--model", required=True, choices=MODELS)
    pr.add_argument("--config", type=Path, help="the config it was trained with (its '# python train.py' line is "
                                                "the command; default: the run's resolved config.yaml)")
    pr.add_argument("--note", help="a remark kept in the .json")
    pr.add_argument("--curves-from", type=Path, help="with --ckpt: draw the learning curves of this run instead "
                                                     "(a rerun of the checkpoint's config; the .json names it)")
    pr.add_argument("--sample-steps", type=int, default=128, help="frames of the RNN-NADE's sample")
    pr.add_argument("--sample-seed", type=int, default=3)
    hand = pr.add_argument_group("training facts by hand (with --ckpt; with a run they replace the run's)")
    for flag, kind in [("--epochs", int), ("--train-seconds", float), ("--valid-nll", float), ("--valid-acc", float),
                       ("--test-nll", float), ("--test-nll-stderr", float), ("--test-acc", float), ("--command", str)]:
        hand.add_argument(flag, type=kind)
    hand.add_argument("--measure-valid", action="store_true", help="evaluate the validation split now (needs --root)")
    hand.add_argument("--root", default="../shared/data/pickle", help="the benchmark pickles' folder")
    ch = verbs.add_parser("check", help="re-evaluate every promoted checkpoint and rewrite RESULTS.md's tables")
    ch.add_argument("--root", default="../shared/data/pickle", help="the benchmark pickles' folder")
    ch.add_argument("--data-dir", default="data", help="parse cache")
    ch.add_argument("--results", help="the file to rewrite (default: RESULTS.md in --repo)")
    ch.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                    help="re-evaluate only these (the others keep their committed figures)")
    ch.add_argument("--corpora", nargs="+", choices=CORPORA, default=list(CORPORA))
    ch.add_argument("--workers", type=int, default=2, help="processes, one thread each")
    a = p.parse_args(argv)
    if a.verb == "promote":
        if (a.run_dir is None) == (a.ckpt is None):
            raise MusicrnnError("give one of a run folder (checkpoints/<run>) and --ckpt PATH")
        if a.curves_from is not None and a.ckpt is None:
            raise MusicrnnError("--curves-from goes with --ckpt: a run folder draws its own curves")
        promote(a)
        return 0
    if a.workers < 1:
        raise MusicrnnError("--workers must be at least 1")
    return check(a)


def main(argv: list[str] | None = None) -> int:
    return run_command(run, argv)


if __name__ == "__main__":
    sys.exit(main())
