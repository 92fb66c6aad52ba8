import argparse
import json
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
                              max_epochs=7, patience=3, accelerator="cpu", max_time=None)
    cmd = ablation.command(ROOT / "configs/ablation/rnn_sgd_c_pascanu.yaml", args, "row", lr=0.3)
    assert cmd[:2] == ["python", "train.py"]
    cli = make_cli([*cmd[2:], "--trainer.logger", "false"])
    stop = [c for c in cli.trainer.callbacks if isinstance(c, EarlyStopping)]
    assert len(stop) == 1 and stop[0].monitor == "val/nll" and stop[0].patience == 3
    assert cli.trainer.max_epochs == 7 and cli.datamodule.hparams.dataset == corpus
    assert cli.config_init.optimizer.init_args.lr == 0.3  # the learning rate searched, over the config's own
    assert any(type(c).__name__ == "PascanuRegularizer" for c in cli.trainer.callbacks)  # the config's own kept
    plots = [c for c in cli.trainer.callbacks if type(c).__name__ == "HiddenGradientPlot"]
    assert len(plots) == 1 and plots[0].every_n_epochs == 10


def test_unknown_corpus_is_refused():
    with pytest.raises(SystemExit):
        ablation.main(["--corpus", "bach"])


def test_the_search_keeps_each_rows_best_validation_run_and_reuses_finished_runs(jsb_root, tmp_path, capsys):
    out, ck = tmp_path / "table.md", tmp_path / "ck"
    argv = ["--corpus", "jsb", "--root", str(jsb_root), "--checkpoint_dir", str(ck), "--out", str(out),
            "--figures", str(tmp_path / "fig"),
            "--lrs", "0.01", "1.0", "--jobs", "2", "--max_epochs", "3", "--patience", "1",
            str(ROOT / "configs/ablation/rnn_sgd.yaml")]
    assert ablation.main(argv) == 0
    summaries = {lr: json.loads((ck / f"ablation-jsb-rnn_sgd-lr{lr}" / "summary.json").read_text())
                 for lr in ("0.01", "1")}
    best = min(summaries, key=lambda lr: summaries[lr]["val/nll"])
    row = next(line for line in out.read_text().splitlines() if line.startswith("| RNN | SGD |"))
    cells = [c.strip() for c in row.split("|")]
    assert cells[3] == best and float(cells[4]) == round(-summaries[best]["val/nll"], 3)
    assert float(cells[6]) == round(summaries[best]["test/log_likelihood"], 3)
    stamps = {p: p.stat().st_mtime_ns for p in ck.glob("*/summary.json")}
    assert ablation.main(argv) == 0  # a second call trains nothing: every run has its summary
    assert {p: p.stat().st_mtime_ns for p in ck.glob("*/summary.json")} == stamps
    assert "done before, summary reused" in capsys.readouterr().out
    assert "per row](fig/jsb-rnn-grad_norm.png)" in out.read_text()
    assert (tmp_path / "fig" / "jsb-rnn-grad_norm.png").stat().st_size > 0
