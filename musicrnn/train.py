"""Train a sequence model on a piano-roll corpus, then test its best checkpoint.

    python train.py                                   # RNN on music21's Bach chorales
    python train.py --config configs/jsb/rnn_nade.yaml
    python train.py --model RNNRBM --data.dataset jsb --data.root ../shared/data/pickle
    python train.py --help

Checkpoints go to ``checkpoints/<run_name>/`` (``best.ckpt`` by ``val/nll``, ``last.ckpt``, and a small
``model.ckpt`` with weights and settings only; ``diverged.txt`` if the non-finite guard stopped the run); logs to ``runs/<run_name>/`` (``--log_dir``; CSV by default,
``--logger tensorboard`` or ``--logger wandb``), with samples every ``--samples.every_n_epochs``. Running the same
command again resumes from ``last.ckpt``, mid-epoch too (``--save_every_n_steps`` also writes it every
so many steps); a damaged ``last.ckpt`` (a full disk, a partial copy) is passed over, with a warning, for
the run's newest intact checkpoint. ``--resume never`` starts afresh, ``--resume PATH`` continues from a
chosen checkpoint. The run ends by testing ``best.ckpt`` and writing ``summary.json`` beside it.

A step whose loss or gradient is NaN/Inf is skipped (``NonFiniteGuard``); ``--nonfinite.patience`` in a row
stop the run. Mistakes on the command line give one line and exit code 2 (``--debug`` shows tracebacks).
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from argparse import ArgumentError
from pathlib import Path

import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar, Timer
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from rich.console import Console
from rich.table import Table

from musicrnn.atomic import atomic_write
from musicrnn.checkpoint import AtomicCheckpointIO, CheckpointError, load_state, slim
from musicrnn.cli import argument_error_line, exception_line, run_command
from musicrnn.data import PianorollDataModule
from musicrnn.errors import MusicrnnError
from musicrnn.guard import DIVERGED, NonFiniteError, NonFiniteGuard
from musicrnn.models import MODELS, SequenceModel  # importing the package imports every subclass: --model RNN resolves
from musicrnn.threads import Threads, choose_threads, follows_free_cores
from musicrnn.tracking import RunInfo, SampleLogger, finish, keep_csv_history, make_logger


class TrainCLI(LightningCLI):
    def add_arguments_to_parser(self, parser):
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="name of the run's folders (default: <dataset>-<model>)")
        parser.add_argument("--checkpoint_dir", type=str, default="checkpoints",
                            help="where each run's checkpoint folder goes")
        parser.add_argument("--log_dir", type=str, default="runs",
                            help="where each run's log folder goes (metrics.csv, pictures, wandb files)")
        parser.add_argument("--save_every_n_steps", type=int, default=0,
                            help="also write last.ckpt every this many optimizer steps (0: at epoch ends only)")
        parser.add_argument("--logger", type=str, default="csv",
                            help="csv, tensorboard or wandb (offline unless WANDB_API_KEY is set); "
                                 "--trainer.logger overrides it")
        parser.add_argument("--threads", type=int, default=0,
                            help="CPU threads (0: choose: for training one thread for cores of up to 512 units "
                                 "unless the model's products are wide (RNN-RBM), else the free cores, re-read every "
                                 "epoch; for validation and test the free cores; see musicrnn/threads.py)")
        parser.add_argument("--resume", type=str, default="auto",
                            help="auto: continue from the run's last.ckpt if there is one (or, if it is damaged, "
                                 "from the run's newest intact checkpoint, with a warning); never: start afresh, "
                                 "overwriting the run's checkpoints; or the path of a checkpoint to continue from")
        parser.add_argument("--eval_train", type=bool, default=False,
                            help="also evaluate the best checkpoint on the training split (train/nll)")
        # Callbacks every run has, as class arguments: their options show in --help and the saved config.
        parser.add_lightning_class_args(NonFiniteGuard, "nonfinite")
        parser.add_lightning_class_args(SampleLogger, "samples")
        parser.set_defaults({"model": {"class_path": "musicrnn.models.RNN"}})

    def run_name(self) -> str:
        c = self.config_init
        return c.run_name or f"{c.data.hparams.dataset}-{type(c.model).__name__.lower()}"

    def instantiate_trainer(self, **kwargs):
        run = self.run_name()
        self.run_dir = Path(self.config_init.checkpoint_dir) / run
        every = self.config_init.save_every_n_steps
        if every < 0:
            raise MusicrnnError(f"--save_every_n_steps must be 0 or more, got {every}")
        self.trainer_defaults["callbacks"] = [
            ModelCheckpoint(dirpath=self.run_dir, filename="best", monitor="val/nll", mode="min",
                            save_last=True, enable_version_counter=False),
            *([ModelCheckpoint(dirpath=self.run_dir, save_top_k=0, save_last=True, every_n_train_steps=every,
                               enable_version_counter=False)] if every else []),
            RunInfo(self.config.as_dict()),
            *([] if self.config_init.threads else
              [Threads(follows_free_cores(self.model.hparams.hidden, self.model.wide_products))]),
            # Training time that a resumed run carries on from its checkpoint (--trainer.max_time's own
            # Timer does so too): summary.json's train_seconds is the whole run's, not its last part's.
            *([] if self.config_init.trainer.get("max_time") else [Timer(verbose=False)]),
            *([RichProgressBar()] if self.config_init.trainer.get("enable_progress_bar") is not False else []),
        ]
        self.trainer_defaults["plugins"] = [AtomicCheckpointIO()]
        if self.config_init.trainer.get("logger") in (None, True):
            kwargs["logger"] = make_logger(self.config_init.logger, run, self.config_init.log_dir)
        return super().instantiate_trainer(**kwargs)


def stopped_by(trainer) -> str:
    """Why ``fit`` ended: ``early stopping`` (``val/nll not finite`` when it stopped on a NaN or infinite
    score: the run diverged), ``max_time``, ``max_epochs`` or ``max_steps``."""
    for c in trainer.callbacks:
        if isinstance(c, EarlyStopping):
            # Lightning >= 2.6 says why; stopped_epoch alone misses a stop in epoch 0 (it is 0 then).
            reason = getattr(getattr(c, "stopping_reason", None), "name", "NOT_STOPPED")
            if reason == "NON_FINITE_METRIC":
                return f"{c.monitor} not finite"
            if c.stopped_epoch > 0 or reason != "NOT_STOPPED":
                return "early stopping"
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    left = timer.time_remaining("train") if timer is not None else None
    if left is not None and left <= 0:
        return "max_time"
    return "max_steps" if 0 < trainer.max_steps <= trainer.global_step else "max_epochs"


def summarise(trainer, model, datamodule, run_dir: Path, seconds: float, eval_train: bool = False,
              why: str = "") -> dict:
    """Test the best checkpoint and write ``summary.json`` (and the slim ``model.ckpt``) beside it, with the
    best ``val/nll`` and the parameter count; ``eval_train`` adds its log-likelihood on the training split;
    ``why`` is ``stopped_by(trainer)`` read right after ``fit``."""
    best = run_dir / "best.ckpt"
    if not best.exists():  # no validation ran (--trainer.limit_val_batches 0, or too few epochs to reach one)
        best = run_dir / "last.ckpt"
        if trainer.is_global_zero:
            print(f"no validation ran, so no best.ckpt: testing {best}")
    if eval_train:  # before the test run, whose metrics are the ones left on the model
        train = trainer.test(model, dataloaders=datamodule.eval_dataloader("train"), ckpt_path=str(best),
                             verbose=False)[0]
    results = trainer.test(model, datamodule=datamodule, ckpt_path=str(best), verbose=False)[0]
    # The checkpoint that monitors val/nll chose best.ckpt; its score is the validation figure of the run.
    chooser = next((c for c in trainer.checkpoint_callbacks if c.monitor == "val/nll"), None)
    val_nll = None if chooser is None or chooser.best_model_score is None else float(chooser.best_model_score)
    summary = {
        "model": type(model).__name__, "dataset": datamodule.hparams.dataset,
        "val/nll": val_nll, "parameters": sum(p.numel() for p in model.parameters()),
        "test/log_likelihood": -results["test/nll"], "test/nll": results["test/nll"],
        "test/nll_stderr": results.get("test/nll_stderr", 0.0),
        "test/frame_acc": results["test/frame_acc"], "epochs": trainer.current_epoch,
        "optimizer_steps": trainer.global_step, "stopped_by": why, "train_seconds": round(seconds, 1),
        "best_checkpoint": str(best), "model_checkpoint": str(run_dir / "model.ckpt"),
    }
    if eval_train:
        summary.update({"train/log_likelihood": -train["test/nll"], "train/nll": train["test/nll"]})
    if trainer.is_global_zero:
        slim(best, run_dir / "model.ckpt")
        text = json.dumps(summary, indent=2) + "\n"
        atomic_write(run_dir / "summary.json", lambda f: f.write(text.encode()))  # read by scripts/ablation.py
        (run_dir / DIVERGED).unlink(missing_ok=True)  # a resumed run that diverged before has now finished
    return summary


def print_summary(summary: dict) -> None:
    table = Table(title=f"{summary['model']} on {summary['dataset']}: test set")
    for col in ("log-likelihood (nats/frame)", "frame accuracy", "epochs", "train time"):
        table.add_column(col)
    ll = f"{summary['test/log_likelihood']:.3f}"
    if summary["test/nll_stderr"]:
        ll += f" ± {summary['test/nll_stderr']:.3f}"
    table.add_row(ll, f"{summary['test/frame_acc']:.4f}", str(summary["epochs"]), f"{summary['train_seconds']:.0f} s")
    console = Console()
    console.print(table)
    console.print(f"checkpoint: {summary['model_checkpoint']}  (summary.json beside it)", soft_wrap=True)


def make_cli(args: list[str]) -> TrainCLI:
    """The training command line on ``args``: parsed, model, data and trainer built, nothing run.

    What ``train.py`` runs and what the tests build. A mistake in the settings raises ``MusicrnnError``
    with one line: jsonargparse's many-line messages are shortened, and Lightning's and torch's own
    ``ValueError``s at construction are bad settings too (nothing has run yet).
    """
    # args= is how --debug is left out; Lightning warns about it when sys.argv is also set.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)  # "Seed set to 0"
    try:
        cli = TrainCLI(SequenceModel, PianorollDataModule, subclass_mode_model=True, run=False, args=args,
                       seed_everything_default=0, save_config_kwargs={"overwrite": True},
                       trainer_defaults={"max_epochs": 100, "use_distributed_sampler": False},
                       parser_kwargs={"exit_on_error": False})  # errors come here, not as usage text
        # torch checks optimizer settings (a negative --model.lr, say) only when it builds the optimizer:
        # built once now so they are reported before any data is loaded.
        cli.model.configure_optimizers()
        check_validation(cli.trainer)
    except ArgumentError as e:
        raise MusicrnnError(argument_error_line(str(e), list(MODELS))) from e
    except MusicrnnError:
        raise
    except (ValueError, FileNotFoundError, MisconfigurationException) as e:
        raise MusicrnnError(exception_line(e)) from e
    return cli


def check_validation(trainer) -> None:
    """``MusicrnnError`` if an ``EarlyStopping`` watches a ``val/`` metric that no validation will compute
    (``--trainer.limit_val_batches 0``): Lightning would stop with a traceback at the first epoch's end."""
    if trainer.limit_val_batches == 0:
        for c in trainer.callbacks:
            if isinstance(c, EarlyStopping) and c.monitor.startswith("val/"):
                raise MusicrnnError(f"EarlyStopping watches {c.monitor}, which no validation computes with "
                                    f"--trainer.limit_val_batches 0: turn validation on, or leave EarlyStopping "
                                    f"out of the config's trainer.callbacks")


def resume_path(choice: str, run_dir: Path, model) -> tuple[str, int] | None:
    """The checkpoint ``--resume`` asks to continue from (``auto``, ``never`` or a path), checked before
    Lightning reads it (Lightning's own errors are tracebacks): readable, and this model's. Returns
    ``(path, its optimizer step)``, or None."""
    if choice == "never":
        return None
    if choice != "auto":
        try:
            return choice, resumable_step(Path(choice), model)
        except CheckpointError as e:
            raise CheckpointError(f"cannot resume: {e}; pass another --resume PATH, or --resume never to "
                                  f"start afresh") from None
    last = run_dir / "last.ckpt"
    if not last.exists():
        return None
    try:
        return str(last), resumable_step(last, model)
    except CheckpointError as e:
        damaged = e
    intact = []  # the run's other full checkpoints (model.ckpt has no optimizer or loop state)
    for path in sorted(run_dir.glob("*.ckpt")):
        if path.name not in ("last.ckpt", "model.ckpt"):
            try:
                intact.append((resumable_step(path, model), str(path)))
            except CheckpointError:
                pass
    if not intact:
        raise CheckpointError(f"cannot resume: {damaged}, and the run has no other intact checkpoint; pass "
                              f"--resume never to start afresh, or --resume PATH to continue from another one")
    step, path = max(intact)
    print(f"warning: {damaged}; resuming instead from {path} (step {step}), the run's newest intact "
          f"checkpoint", file=sys.stderr)
    return path, step


def resumable_step(path: Path, model) -> int:
    """The optimizer step of a checkpoint of ``model`` (same parameter names and shapes) at ``path``;
    ``CheckpointError`` if it is unreadable or another model's."""
    ckpt = load_state(path)
    theirs, mine = ckpt["state_dict"], model.state_dict()
    if set(theirs) != set(mine) or any(theirs[k].shape != mine[k].shape for k in mine):
        raise CheckpointError(f"{path} holds a different model (another --model or other sizes)")
    return int(ckpt.get("global_step", 0))


def train(argv: list[str]) -> int:
    cli = make_cli(argv)
    count = choose_threads(cli.model.hparams.hidden, cli.config_init.threads, cli.model.wide_products)
    if count:  # else the Threads callback reads the free cores
        torch.set_num_threads(count)
    resume, step = resume_path(cli.config_init.resume, cli.run_dir, cli.model) or (None, 0)
    if resume:
        print(f"resuming from {resume}")
        if isinstance(cli.trainer.logger, CSVLogger):
            keep_csv_history(cli.trainer.logger, step)
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=resume)
    except MisconfigurationException as e:  # Lightning's word for settings that do not fit together
        raise MusicrnnError(exception_line(e)) from e
    except NonFiniteError as e:  # the run diverged: its folder says so (scripts/ablation.py reads it)
        if cli.trainer.is_global_zero:
            line = f"error: {e}\n".encode()
            atomic_write(cli.run_dir / DIVERGED, lambda f: f.write(line))
        raise
    if cli.trainer.fast_dev_run:  # a smoke run saves no checkpoint to test
        return 0
    why = stopped_by(cli.trainer)  # now: the test runs below restore the callbacks' states from best.ckpt
    timer = next(c for c in cli.trainer.callbacks if isinstance(c, Timer))
    summary = summarise(cli.trainer, cli.model, cli.datamodule, cli.run_dir, timer.time_elapsed("train"),
                        cli.config_init.eval_train, why)
    if cli.trainer.is_global_zero:
        finish(cli.trainer, summary)
        print_summary(summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(train, argv)


if __name__ == "__main__":
    sys.exit(main())
