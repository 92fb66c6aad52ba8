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
CHOSEN = [ROOT / "configs/jsb/rnn.yaml", ROOT / "configs/nottingham/rnn.yaml"]  # the techniques' bases
SHIPPED = sorted(c for c in ROOT.glob("configs/**/*.yaml") if c != ablation.BASE)
# How a shipped config is used: an ablation row over its base, a technique over each chosen config, the
# others alone.
CASES = {f"{c.parent.name}/{c.stem}" + (f" over {on.parent.name}" if on else ""): files
         for c in SHIPPED
         for on, files in ([(on, [on, c]) for on in CHOSEN] if c.parent == ablation.TECHNIQUES else
                           [(None, ablation.config_files(c) if c.parent == ablation.BASE.parent else [c])])}

# Issue 15's techniques (configs/techniques/<name>.yaml): whether a CLI has each one on.
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


@pytest.mark.parametrize("files", CASES.values(), ids=CASES.keys())
def test_every_shipped_config_instantiates(files, tmp_path):
    cli = make_cli([*(a for c in files for a in ("--config", str(c))), "--trainer.logger", "false",
                    "--checkpoint_dir", str(tmp_path)])
    config = files[-1]
    callbacks = {type(c) for c in cli.trainer.callbacks}
    if config.parent == ablation.BASE.parent:  # a paper row <model>_sgd_<letters>: C clipping, L leaky, ...
        parts = config.stem.split("_")
        letters = parts[2] if len(parts) > 2 else ""
        clip = [c for c in cli.trainer.callbacks if isinstance(c, GradientClipping)]
        assert ("c" in letters) == (bool(clip) and clip[0].threshold < float("inf"))
        assert ("m" in letters) == (NesterovMomentum in callbacks)
        assert ("l" in letters) == (cli.model.hparams.leaky != "none")
        assert ("r" in letters) == (cli.model.hparams.cell == "relu")
        if "m" in letters:  # LightningCLI's --optimizer replaced configure_optimizers
            assert type(cli.model.configure_optimizers()).__name__ == "SimplifiedNesterov"
    technique = config.stem if config.parent == ablation.TECHNIQUES else None
    assert technique is None or technique in TECHNIQUES or technique == "tanh", f"no check for {technique!r}"
    for name, is_on in TECHNIQUES.items():
        assert is_on(cli) == (name == technique), name
    if technique is not None:  # over the chosen config: its own settings kept, the technique's added
        chosen = make_cli(["--config", str(files[0]), "--trainer.logger", "false", "--checkpoint_dir", str(tmp_path)])
        assert cli.model.hparams.hidden == chosen.model.hparams.hidden
        assert cli.config_init.optimizer == chosen.config_init.optimizer
        kept = {type(c) for c in chosen.trainer.callbacks}
        assert kept <= callbacks
        if technique in ("pascanu", "gradsampling", "tanh"):  # they need a plain cell
            assert cli.model.hparams.cell == "tanh"


def test_callbacks_every_run_has_are_options_of_the_command_line(tmp_path):
    """NonFiniteGuard and SampleLogger: set from the command line, shown by --help, kept in the saved config."""
    cli = make_cli(["--nonfinite.patience", "3", "--samples.every_n_epochs", "0", "--trainer.logger", "false",
                    "--checkpoint_dir", str(tmp_path)])
    assert [c.patience for c in cli.trainer.callbacks if isinstance(c, NonFiniteGuard)] == [3]
    assert [c.every for c in cli.trainer.callbacks if isinstance(c, SampleLogger)] == [0]
    saved = cli.config.as_dict()
    assert saved["nonfinite"]["patience"] == 3 and saved["samples"]["every_n_epochs"] == 0
    assert "--nonfinite.patience" in cli.parser.format_help() and "--samples.every_n_epochs" in cli.parser.format_help()
