import argparse
import json
import importlib.util
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import EarlyStopping

from musicrnn.callbacks import GradientClipping
from musicrnn.train import make_cli

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("ablation", ROOT / "scripts" / "ablation.py")
ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablation)
CONFIGS = ablation.row_configs()


def test_row_names_are_distinct():
    assert ablation.row_name(ROOT / "configs/ablation/nade_sgd_crm.yaml") == ("RNN-NADE", "SGD+CRM")
    names = [ablation.row_name(c) for c in CONFIGS]
    assert len(set(names)) == len(names)
    on = ROOT / "configs/jsb/rnn_nade.yaml"
    assert ablation.row_name(ablation.TECHNIQUES / "layernorm.yaml", on) == ("RNN-NADE", "+LAYERNORM")
    assert ablation.row_name(on, on) == ("RNN-NADE", ablation.CHOSEN)


@pytest.mark.parametrize("corpus", ["nottingham", "piano-midi"])
def test_a_rows_command_trains_on_the_corpus_with_early_stopping(corpus, tmp_path):
    args = argparse.Namespace(corpus=corpus, root=str(tmp_path), checkpoint_dir=str(tmp_path / "ck"),
                              max_epochs=7, patience=3, accelerator="cpu", max_time=None, on=None,
                              log_dir="runs")
    cmd = ablation.command(ROOT / "configs/ablation/rnn_sgd_c.yaml", args, "row", lr=0.3)
    assert cmd[:2] == ["python", "train.py"]
    cli = make_cli([*cmd[2:], "--trainer.logger", "false"])
    stop = [c for c in cli.trainer.callbacks if isinstance(c, EarlyStopping)]
    assert len(stop) == 1 and stop[0].monitor == "val/nll" and stop[0].patience == 3
    assert cli.trainer.max_epochs == 7 and cli.datamodule.hparams.dataset == corpus
    assert cli.config_init.optimizer.init_args.lr == 0.3  # the learning rate searched, over the config's own
    clip = [c for c in cli.trainer.callbacks if isinstance(c, GradientClipping)]
    assert len(clip) == 1 and clip[0].threshold == 3.0  # the config's own kept
    plots = [c for c in cli.trainer.callbacks if type(c).__name__ == "HiddenGradientPlot"]
    assert len(plots) == 1 and plots[0].every_n_epochs == 10


@pytest.mark.parametrize("on, threshold", [("configs/nottingham/rnn.yaml", 1.0), ("configs/nottingham/rnn_nade.yaml",
                                                                                   float("inf"))])
def test_a_technique_row_trains_as_its_chosen_config_says_with_its_gradient_measured(on, threshold, tmp_path):
    on = ROOT / on
    args = argparse.Namespace(corpus="nottingham", root=str(tmp_path), checkpoint_dir=str(tmp_path / "ck"),
                              max_epochs=7, patience=3, accelerator="cpu", max_time=None, on=on,
                              log_dir="runs")
    cmd = ablation.command(ablation.TECHNIQUES / "pascanu.yaml", args, "row")
    cli = make_cli([*cmd[2:], "--trainer.logger", "false"])
    chosen = make_cli(["--config", str(on), "--trainer.logger", "false", "--checkpoint_dir", str(tmp_path)])
    stop = [c for c in cli.trainer.callbacks if isinstance(c, EarlyStopping)]
    assert [(c.monitor, c.patience) for c in stop] == [(c.monitor, c.patience) for c in chosen.trainer.callbacks
                                                       if isinstance(c, EarlyStopping)]  # not --patience's 3
    assert cli.trainer.max_epochs == chosen.trainer.max_epochs != 7
    assert cli.trainer.gradient_clip_val is None  # Lightning's clipping is replaced by one that logs the norm:
    clip = [c for c in cli.trainer.callbacks if isinstance(c, GradientClipping)]
    assert len(clip) == 1 and clip[0].threshold == threshold
    assert any(type(c).__name__ == "PascanuRegularizer" for c in cli.trainer.callbacks)
    assert cli.model.hparams.cell == "tanh" and cli.model.hparams.hidden == chosen.model.hparams.hidden


def test_techniques_over_a_chosen_config_compare_with_it_alone(jsb_root, tmp_path):
    on, out = tmp_path / "chosen.yaml", tmp_path / "table.md"
    on.write_text("data: {dataset: jsb, batch_size: 4}\nmodel:\n  class_path: musicrnn.models.RNN\n"
                  "  init_args: {hidden: 8}\ntrainer: {max_epochs: 2, gradient_clip_val: 2.0}\n")
    argv = ["--corpus", "jsb", "--on", str(on), "--root", str(jsb_root), "--checkpoint_dir", str(tmp_path / "ck"),
            "--log_dir", str(tmp_path / "runs"), "--out", str(out), "--figures", str(tmp_path / "fig"), "--jobs", "2",
            str(ablation.TECHNIQUES / "layernorm.yaml")]
    assert ablation.main(argv) == 0
    # The logs go where --log_dir says, not into the repository's runs/ (where real ablation runs live).
    assert (tmp_path / "runs" / "technique-jsb-chosen-layernorm" / "metrics.csv").is_file()
    assert not (ablation.ROOT / "runs" / "technique-jsb-chosen-layernorm").exists()
    rows = [[c.strip() for c in line.split("|")] for line in out.read_text().splitlines() if line.startswith("| RNN |")]
    assert [r[2] for r in rows] == [ablation.CHOSEN, "+LAYERNORM"] and all(r[8] == "2" for r in rows)
    summaries = [json.loads(p.read_text()) for p in sorted((tmp_path / "ck").glob("technique-jsb-chosen-*/summary.json"))]
    assert len(summaries) == 2 and float(rows[0][4]) == round(-summaries[0]["val/nll"], 3)  # chosen < layernorm
    assert "--config configs/techniques/layernorm.yaml" not in rows[0][-2] and "layernorm.yaml" in rows[1][-2]
    assert "against as chosen" in out.read_text()
    assert (tmp_path / "fig" / "techniques-jsb-rnn-grad_norm.png").stat().st_size > 0


@pytest.mark.parametrize("argv", [["--corpus", "bach"], ["--on", "nope.yaml"], ["--table_only", "--fresh"],
                                  ["--on", str(ablation.TECHNIQUES / "lstm.yaml")]])
def test_bad_arguments_are_refused_in_one_line(argv, capsys):
    with pytest.raises(SystemExit):
        ablation.main(argv)
    assert capsys.readouterr().err.strip().splitlines()[-1].split(": error: ")[0].endswith(".py")


def test_the_search_keeps_each_rows_best_validation_run_and_reuses_finished_runs(jsb_root, tmp_path, capsys):
    out, ck = tmp_path / "table.md", tmp_path / "ck"
    argv = ["--corpus", "jsb", "--root", str(jsb_root), "--checkpoint_dir", str(ck), "--out", str(out),
            "--figures", str(tmp_path / "fig"), "--log_dir", str(tmp_path / "runs"),
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
    assert "per row](fig/ablation-jsb-rnn-grad_norm.png)" in out.read_text()
    assert (tmp_path / "fig" / "ablation-jsb-rnn-grad_norm.png").stat().st_size > 0
    # --table_only: a row not run yet is named, not trained
    assert ablation.main([*argv, str(ROOT / "configs/ablation/rnn_sgd_c.yaml"), "--table_only"]) == 0
    assert not (ck / "ablation-jsb-rnn_sgd_c-lr0.01").exists()
    text = out.read_text()
    assert "| RNN | SGD |" in text and "| RNN | SGD+C |" not in text
    assert "Not run yet" in text and "ablation-jsb-rnn_sgd_c-lr0.01, ablation-jsb-rnn_sgd_c-lr1" in text
    # Without --lrs the paper's rows are searched over the rates RESULTS.md's tables used.
    argv = [a for a in argv if a not in ("--lrs", "0.01", "1.0")]
    assert ablation.main([*argv, "--table_only"]) == 0
    assert "ablation-jsb-rnn_sgd-lr0.1, ablation-jsb-rnn_sgd-lr0.3" in out.read_text()


def test_a_rate_that_diverges_is_part_of_the_search_not_a_failure(tmp_path, capsys):
    """A learning rate of 1e38 overflows the weights on its first step: on a corpus of 13 batches per epoch
    the non-finite guard stops the run in epoch 0 (exit 1); on 1 batch per epoch validation reads inf and
    early stopping ends it. Either way the row keeps the rate that trained, says which diverged, and a
    second call does not retry it."""
    from conftest import write_benchmark

    for name, sizes in (("guard", (100, 3, 3)), ("early", (6, 3, 3))):
        root, ck, out = tmp_path / name, tmp_path / name / "ck", tmp_path / name / "table.md"
        write_benchmark(root, sizes=sizes)
        argv = ["--corpus", "jsb", "--root", str(root), "--checkpoint_dir", str(ck), "--log_dir", str(root / "runs"),
                "--out", str(out), "--figures", str(root / "fig"), "--lrs", "0.01", "1e38", "--jobs", "2",
                "--max_epochs", "2", "--patience", "5", str(ROOT / "configs/ablation/rnn_sgd.yaml")]
        assert ablation.main(argv) == 0
        row = next(line for line in out.read_text().splitlines() if line.startswith("| RNN | SGD |"))
        assert row.split("|")[3].strip() == "0.01 (1e+38 diverged)"
        marker = ck / "ablation-jsb-rnn_sgd-lr1e+38" / "diverged.txt"
        if name == "guard":
            assert "non-finite loss or gradient" in marker.read_text()
        else:
            assert not marker.exists()
            summary = json.loads((marker.parent / "summary.json").read_text())
            assert summary["stopped_by"] == "val/nll not finite" and summary["epochs"] == 1
        capsys.readouterr()
        assert ablation.main(argv) == 0 and "lr1e+38: done before, diverged" in capsys.readouterr().out
        # A row whose every rate diverged has no figures: it is named under the table instead.
        assert ablation.main([*argv[:-7], "--lrs", "1e38", "--table_only", argv[-1]]) == 0
        assert "Diverged at every learning rate tried (a non-finite loss or validation score): RNN SGD." in out.read_text()
