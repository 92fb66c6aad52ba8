from pathlib import Path

import pytest

from musicrnn.callbacks import GradientClipping, NesterovMomentum
from musicrnn.guard import NonFiniteGuard
from musicrnn.tracking import SampleLogger
from musicrnn.train import make_cli
from scripts import ablation

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(c for c in ROOT.glob("configs/**/*.yaml") if c != ablation.BASE)


def config_args(config: Path) -> list[str]:
    """How a shipped config is used: an ablation row over its base, the others alone."""
    files = ablation.config_files(config) if config.parent == ablation.BASE.parent else [config]
    return [a for c in files for a in ("--config", str(c))]


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


def test_callbacks_every_run_has_are_options_of_the_command_line(tmp_path):
    """NonFiniteGuard and SampleLogger: set from the command line, shown by --help, kept in the saved config."""
    cli = make_cli(["--nonfinite.patience", "3", "--samples.every_n_epochs", "0", "--trainer.logger", "false",
                    "--checkpoint_dir", str(tmp_path)])
    assert [c.patience for c in cli.trainer.callbacks if isinstance(c, NonFiniteGuard)] == [3]
    assert [c.every for c in cli.trainer.callbacks if isinstance(c, SampleLogger)] == [0]
    saved = cli.config.as_dict()
    assert saved["nonfinite"]["patience"] == 3 and saved["samples"]["every_n_epochs"] == 0
    assert "--nonfinite.patience" in cli.parser.format_help() and "--samples.every_n_epochs" in cli.parser.format_help()
