"""Experiment tracking: which logger a run uses, what is recorded with it, and samples while training.

- ``make_logger``: CSV (the default, no set-up), TensorBoard, or Weights & Biases. wandb runs offline
  unless ``WANDB_API_KEY`` is set or ``WANDB_MODE=online`` (``wandb sync runs/wandb/offline-run-*`` uploads
  an offline run later), so it works on a machine with no network.
- ``RunInfo``: logs the resolved config, the git commit and the corpus statistics with the run.
- ``SampleLogger``: every N epochs samples a few short sequences and logs each as a piano-roll image and
  an audio clip (``wandb.Image``/``wandb.Audio``, TensorBoard images/audio, and always files under
  ``<log dir>/samples/``), so training progress can be seen and heard.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
from pathlib import Path

import numpy as np
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from musicrnn.errors import MusicrnnError
from musicrnn.pianoroll import roll_to_midi
from musicrnn.render import midi_to_wav, roll_to_png

LOGGERS = ("csv", "tensorboard", "wandb")


def make_logger(kind: str, run: str, save_dir: str = "runs"):
    """The logger of a run named ``run``, writing under ``save_dir``."""
    if kind == "csv":
        return CSVLogger(save_dir=save_dir, name=run, version="")
    if kind == "tensorboard":
        return TensorBoardLogger(save_dir=save_dir, name=run, version="")
    if kind == "wandb":
        online = bool(os.environ.get("WANDB_API_KEY")) or os.environ.get("WANDB_MODE") == "online"
        folder = Path(save_dir) / run  # wandb writes <folder>/wandb/offline-run-*/
        folder.mkdir(parents=True, exist_ok=True)
        return WandbLogger(name=run, project=os.environ.get("WANDB_PROJECT", "musicrnn"), save_dir=str(folder),
                           offline=not online)
    raise MusicrnnError(f"unknown logger {kind!r}; choose one of {', '.join(LOGGERS)}")


def keep_csv_history(logger: CSVLogger, resumed_step: int) -> None:
    """Keep a resumed run's ``metrics.csv``: Lightning's CSV writer deletes the file when it starts, so a
    run resumed at epoch 80 kept only epochs 80 on (seen on the Piano-midi.de RNN-RBM). Starts the writer
    now, puts back the old rows up to ``resumed_step`` (later ones are logged again), and gives the writer
    their columns, so that it appends (and rewrites the file with every row when a column is new)."""
    path = Path(logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = reader.fieldnames or [], [r for r in reader if int(r.get("step") or 0) <= resumed_step]
    writer = logger.experiment  # creating it deletes the file
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=columns)
        out.writeheader()
        out.writerows(rows)
    writer.metrics_keys = sorted(columns)  # the writer's own order: sorted


def git_commit() -> str:
    """The commit of the code that runs (``+dirty`` with uncommitted changes), or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) if sha else "unknown"


def finish(trainer, summary: dict) -> None:
    """Record the run's test summary with every logger and close wandb runs (which writes their
    config and summary files, offline too)."""
    numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(numbers)
            logger.experiment.finish()


class RunInfo(Callback):
    """Logs the resolved config, the git commit and the data statistics once, when fitting starts."""

    def __init__(self, config: dict):
        self.config = config

    @rank_zero_only
    def on_fit_start(self, trainer, pl_module):
        if trainer.logger is None:
            return
        stats = trainer.datamodule.statistics() if trainer.datamodule is not None else {}
        info = {"git_commit": git_commit(), "config": self.config,
                "data_stats": {s: {k: v for k, v in st.items() if k in ("sequences", "frames", "mean_polyphony")}
                               for s, st in stats.items()}}
        trainer.logger.log_hyperparams(info)


class SampleLogger(Callback):
    """Logs samples while training, each as a piano-roll image and a WAV clip (pretty_midi's synthesis).

    Args:
        every_n_epochs: sample every this many epochs (0: never).
        num: sequences per sampling.
        steps: frames per sequence.
        temperature: divides every logit (below 1 sharper, above 1 flatter).
    """

    def __init__(self, every_n_epochs: int = 10, num: int = 2, steps: int = 64, temperature: float = 1.0):
        if every_n_epochs < 0 or num < 1 or steps < 1 or temperature <= 0:
            raise MusicrnnError("SampleLogger needs every_n_epochs >= 0, num >= 1, steps >= 1, temperature > 0")
        self.every, self.num, self.steps, self.temperature = every_n_epochs, num, steps, temperature

    def on_validation_epoch_end(self, trainer, pl_module):
        epoch = trainer.current_epoch
        if not self.every or trainer.sanity_checking or (epoch + 1) % self.every:
            return
        # Every rank draws (so random streams stay in step); only rank 0 writes and logs.
        rolls = pl_module.sample(self.num, self.steps, temperature=self.temperature).cpu().numpy()
        if trainer.is_global_zero:
            self._log(trainer, rolls.astype(np.uint8), epoch)

    def _log(self, trainer, rolls: np.ndarray, epoch: int) -> None:
        fpb = getattr(trainer.datamodule, "frames_per_beat", 1)
        folder = Path(trainer.log_dir or trainer.default_root_dir) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        for i, roll in enumerate(rolls):
            png, (wav, _) = roll_to_png(roll, frames_per_beat=fpb), midi_to_wav(roll_to_midi(roll, fpb))
            stem = folder / f"epoch{epoch:04d}-{i}"
            stem.with_suffix(".png").write_bytes(png)
            stem.with_suffix(".wav").write_bytes(wav)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    import wandb  # optional: installed only by those who log to wandb

                    logger.experiment.log({f"samples/roll{i}": wandb.Image(str(stem.with_suffix(".png"))),
                                           f"samples/audio{i}": wandb.Audio(str(stem.with_suffix(".wav"))),
                                           "trainer/global_step": trainer.global_step})
                elif isinstance(logger, TensorBoardLogger):
                    import matplotlib.image  # heavy: only for TensorBoard runs

                    image = matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3]
                    logger.experiment.add_image(f"samples/roll{i}", image, epoch, dataformats="HWC")
                    samples = np.frombuffer(wav[44:], dtype=np.int16).astype(np.float32) / 32768
                    logger.experiment.add_audio(f"samples/audio{i}", samples[None], epoch, sample_rate=44100)
