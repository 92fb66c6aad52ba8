import argparse
import importlib.util
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import EarlyStopping

from musicrnn.train import make_cli

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("ablation", ROOT / "scripts" / "ablation.py")
ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablation)
CONFIGS = ablation.row_configs()


def test_row_names_are_distinct():
    assert ablation.row_name(ROOT / "configs/ablation/nade_sgd_crm.yaml") == ("RNN-NADE", "SGD+CRM")
    assert ablation.row_name(ROOT / "configs/ablation/rnn_sgd_c_layernorm.yaml") == ("RNN", "SGD+C+LAYERNORM")
    names = [ablation.row_name(c) for c in CONFIGS]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("corpus", ["nottingham", "piano-midi"])
def test_a_rows_command_trains_on_the_corpus_with_early_stopping(corpus, tmp_path):
    args = argparse.Namespace(corpus=corpus, root=str(tmp_path), checkpoint_dir=str(tmp_path / "ck"),
                              max_epochs=7, patience=3)
    cmd = ablation.command(ROOT / "configs/ablation/rnn_sgd_c_pascanu.yaml", args, "row")
    assert cmd[:2] == ["python", "train.py"]
    cli = make_cli([*cmd[2:], "--trainer.logger", "false"])
    stop = [c for c in cli.trainer.callbacks if isinstance(c, EarlyStopping)]
    assert len(stop) == 1 and stop[0].monitor == "val/nll" and stop[0].patience == 3
    assert cli.trainer.max_epochs == 7 and cli.datamodule.hparams.dataset == corpus
    assert any(type(c).__name__ == "PascanuRegularizer" for c in cli.trainer.callbacks)  # the config's own kept
    plots = [c for c in cli.trainer.callbacks if type(c).__name__ == "HiddenGradientPlot"]
    assert len(plots) == 1 and plots[0].every_n_epochs == 10


def test_unknown_corpus_is_refused():
    with pytest.raises(SystemExit):
        ablation.main(["--corpus", "bach"])
