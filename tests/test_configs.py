from pathlib import Path

import pytest

from musicrnn.callbacks import GradientClipping, NesterovMomentum
from musicrnn.gradient_sampling import GradientNormSampling
from musicrnn.guard import NonFiniteGuard
from musicrnn.regularizers import PascanuRegularizer, RecurrentPenalty
from musicrnn.schedules import ChunkCurriculum, ScheduledSampling
from musicrnn.tracking import SampleLogger
from musicrnn.train import make_cli
from scripts import ablation

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(c for c in ROOT.glob("configs/**/*.yaml") if c != ablation.BASE)


def config_args(config: Path) -> list[str]:
    """How a shipped config is used: an ablation row over its base, the others alone."""
    files = ablation.config_files(config) if config.parent == ablation.BASE.parent else [config]
    return [a for c in files for a in ("--config", str(c))]


# Issue 15's rows <model>_sgd_<letters>_<technique>: whether a CLI has each technique on.
TECHNIQUES = {
    "layernorm": lambda cli: cli.model.hparams.norm == "layer",
    "weightnorm": lambda cli: cli.model.hparams.norm == "weight",
    "vardropout": lambda cli: cli.model.hparams.variational_dropout > 0,
    "lstm": lambda cli: cli.model.hparams.cell == "lstm" and cli.model.hparams.forget_bias is None,
    "lstmforget": lambda cli: cli.model.hparams.forget_bias == 1.0,
    "l2rec": lambda cli: any(isinstance(c, RecurrentPenalty) and c.l2 > 0 for c in cli.trainer.callbacks),
    "radius": lambda cli: any(isinstance(c, RecurrentPenalty) and c.radius > 0 for c in cli.trainer.callbacks),
    "pascanu": lambda cli: any(isinstance(c, PascanuRegularizer) for c in cli.trainer.callbacks),
    "sampling": lambda cli: any(isinstance(c, ScheduledSampling) for c in cli.trainer.callbacks),
    "curriculum": lambda cli: any(isinstance(c, ChunkCurriculum) for c in cli.trainer.callbacks),
    "gradsampling": lambda cli: any(isinstance(c, GradientNormSampling) for c in cli.trainer.callbacks),
}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_every_shipped_config_instantiates(config, tmp_path):
    cli = make_cli([*config_args(config), "--trainer.logger", "false", "--checkpoint_dir", str(tmp_path)])
    # An ablation row <model>_sgd_<letters>: C clipping, L leaky, R rectifiers, M momentum.
    parts = config.stem.split("_")
    techniques = parts[2] if config.parent.name == "ablation" and len(parts) > 2 else ""
    callbacks = {type(c) for c in cli.trainer.callbacks}
    clip = [c for c in cli.trainer.callbacks if isinstance(c, GradientClipping)]
    assert ("c" in techniques) == (bool(clip) and clip[0].threshold < float("inf"))
    assert ("m" in techniques) == (NesterovMomentum in callbacks)
    assert ("l" in techniques) == (cli.model.hparams.leaky != "none")
    assert ("r" in techniques) == (cli.model.hparams.cell == "relu")
    if "m" in techniques:  # LightningCLI's --optimizer replaced configure_optimizers
        assert type(cli.model.configure_optimizers()).__name__ == "SimplifiedNesterov"
    technique = parts[3] if config.parent.name == "ablation" and len(parts) > 3 else None
    assert technique is None or technique in TECHNIQUES, f"no check for technique {technique!r}"
    for name, is_on in TECHNIQUES.items():
        assert is_on(cli) == (name == technique), name


def test_callbacks_every_run_has_are_options_of_the_command_line(tmp_path):
    """NonFiniteGuard and SampleLogger: set from the command line, shown by --help, kept in the saved config."""
    cli = make_cli(["--nonfinite.patience", "3", "--samples.every_n_epochs", "0", "--trainer.logger", "false",
                    "--checkpoint_dir", str(tmp_path)])
    assert [c.patience for c in cli.trainer.callbacks if isinstance(c, NonFiniteGuard)] == [3]
    assert [c.every for c in cli.trainer.callbacks if isinstance(c, SampleLogger)] == [0]
    saved = cli.config.as_dict()
    assert saved["nonfinite"]["patience"] == 3 and saved["samples"]["every_n_epochs"] == 0
    assert "--nonfinite.patience" in cli.parser.format_help() and "--samples.every_n_epochs" in cli.parser.format_help()
