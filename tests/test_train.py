"""train.py and evaluate as a user runs them: real Trainer runs on tiny data."""

import json
import subprocess
import sys
import wave
from pathlib import Path

import matplotlib.image
import pytest
import torch
from test_configs import CASES

from musicrnn import train
from musicrnn import plot
from musicrnn.errors import MusicrnnError
from musicrnn.models import load_model
from musicrnn.evaluate import evaluate, main as evaluate_main

ROOT = Path(__file__).resolve().parent.parent


def test_fast_dev_run_smoke(jsb_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for model in ("RNN", "RNNNADE", "RNNRBM"):
        assert train.main(["--model", model, "--model.hidden", "8", "--data.dataset", "jsb",
                           "--data.root", str(jsb_root), "--trainer.fast_dev_run", "true",
                           "--trainer.enable_progress_bar", "false"]) == 0


def test_train_then_evaluate_reproduces_the_summary(jsb_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["--model", "RNNNADE", "--model.hidden", "16", "--model.nade_hidden", "8",
            "--data.dataset", "jsb", "--data.root", str(jsb_root), "--trainer.max_epochs", "2",
            "--run_name", "tiny", "--trainer.enable_progress_bar", "false"]
    assert train.main(args) == 0
    run = tmp_path / "checkpoints" / "tiny"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["test/log_likelihood"] == -summary["test/nll"]
    model, _ = load_model(run / "model.ckpt")
    assert summary["parameters"] == sum(p.numel() for p in model.parameters()) > 0
    valid = evaluate(str(run / "best.ckpt"), "jsb", str(jsb_root), split="valid", data_dir=str(tmp_path / "data"),
                     progress=False)
    assert abs(valid["nll"] - summary["val/nll"]) < 1e-5  # the score that chose best.ckpt
    for ckpt in ("best.ckpt", "model.ckpt"):
        r = evaluate(str(run / ckpt), "jsb", str(jsb_root), data_dir=str(tmp_path / "data"), progress=False)
        assert abs(r["nll"] - summary["test/nll"]) < 1e-6
    model, data = load_model(run / "model.ckpt")
    assert data["dataset"] == "jsb" and model.hparams.nade_hidden == 8
    assert (run / "model.ckpt").stat().st_size < (run / "last.ckpt").stat().st_size
    out = subprocess.run([sys.executable, "-m", "musicrnn.evaluate", str(run / "model.ckpt"), "--dataset", "jsb",
                          "--root", str(jsb_root), "--data-dir", str(tmp_path / "data")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0
    assert out.stdout == f"nll={summary['test/nll']:.4f} frame_acc={summary['test/frame_acc']:.4f} frames=55\n"


def test_evaluate_seed_repeats_an_rnn_rbms_estimate(jsb_root, tmp_path, monkeypatch, capsys):
    # The RNN-RBM's AIS and mode-finding chains draw random numbers: --seed repeats a line, another seed
    # (or none) gives a fresh estimate.
    monkeypatch.chdir(tmp_path)
    assert train.main(["--model", "RNNRBM", "--model.hidden", "8", "--model.rbm_hidden", "6", "--data.dataset",
                       "jsb", "--data.root", str(jsb_root), "--trainer.max_epochs", "1", "--run_name", "rbm",
                       "--trainer.enable_progress_bar", "false"]) == 0
    capsys.readouterr()
    lines = []
    for seed in ("0", "0", "1"):
        assert evaluate_main([str(tmp_path / "checkpoints" / "rbm" / "model.ckpt"), "--dataset", "jsb", "--root",
                              str(jsb_root), "--ais-runs", "2", "--ais-steps", "10", "--seed", seed]) == 0
        lines.append(capsys.readouterr().out)
    assert lines[0] == lines[1] != lines[2] and lines[0].startswith("nll="), lines


def test_a_run_without_validation_tests_its_last_checkpoint(jsb_root, tmp_path, monkeypatch, capsys):
    # --trainer.limit_val_batches 0: no val/nll, so no best.ckpt; the run used to end in a traceback.
    monkeypatch.chdir(tmp_path)
    assert train.main(["--model", "RNN", "--model.hidden", "8", "--data.dataset", "jsb", "--data.root", str(jsb_root),
                       "--trainer.max_epochs", "2", "--trainer.limit_val_batches", "0", "--run_name", "noval",
                       "--trainer.enable_progress_bar", "false"]) == 0
    run = tmp_path / "checkpoints" / "noval"
    summary = json.loads((run / "summary.json").read_text())
    assert not (run / "best.ckpt").exists() and summary["best_checkpoint"] == "checkpoints/noval/last.ckpt"
    assert summary["val/nll"] is None and summary["epochs"] == 2
    r = evaluate(str(run / "last.ckpt"), "jsb", str(jsb_root), data_dir=str(tmp_path / "data"), progress=False)
    assert abs(r["nll"] - summary["test/nll"]) < 1e-6
    assert "no validation ran" in capsys.readouterr().out


def test_the_summary_says_why_training_stopped(jsb_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["--model", "RNN", "--model.hidden", "8", "--data.dataset", "jsb", "--data.root", str(jsb_root),
              "--trainer.enable_progress_bar", "false", "--optimizer", "SGD", "--optimizer.lr", "3.0"]
    # plain SGD at a learning rate this high makes val/nll worse after its first epochs: patience 2 stops it
    # (the test runs after fit restore the callbacks' states from best.ckpt: read too late, it said max_epochs)
    assert train.main([*common, "--run_name", "early", "--trainer.max_epochs", "1000",
                       "--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping",
                       "--trainer.callbacks.monitor=val/nll", "--trainer.callbacks.patience=2"]) == 0
    assert train.main([*common, "--run_name", "full", "--trainer.max_epochs", "3"]) == 0
    early, full = (json.loads((tmp_path / "checkpoints" / r / "summary.json").read_text()) for r in ("early", "full"))
    assert early["stopped_by"] == "early stopping" and early["epochs"] < 1000
    assert full["stopped_by"] == "max_epochs" and full["epochs"] == 3


def test_csv_run_logs_samples_run_info_and_plots(jsb_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train.main(["--model.hidden", "8", "--data.dataset", "jsb", "--data.root", str(jsb_root),
                       "--trainer.max_epochs", "3", "--run_name", "p", "--trainer.enable_progress_bar", "false",
                       "--samples.every_n_epochs", "2"]) == 0
    samples = tmp_path / "runs" / "p" / "samples"
    assert sorted(f.name for f in samples.iterdir()) == [  # epoch index 1 is the second epoch
        "epoch0001-0.png", "epoch0001-0.wav", "epoch0001-1.png", "epoch0001-1.wav"]
    assert matplotlib.image.imread(samples / "epoch0001-0.png").shape[0] > 100
    with wave.open(str(samples / "epoch0001-1.wav")) as w:
        assert w.getnframes() / w.getframerate() == pytest.approx(64 * 0.5, rel=0.05)  # 64 beats at 120 bpm
    hparams = (tmp_path / "runs" / "p" / "hparams.yaml").read_text()
    assert "git_commit:" in hparams and "data_stats:" in hparams and "sequences: 6" in hparams
    assert plot.main([str(tmp_path / "runs" / "p")]) == 0
    image = matplotlib.image.imread(tmp_path / "runs" / "p" / "curves.png")
    assert image.shape[0] > 200 and image.shape[1] > 500 and image[..., :3].std() > 0.05
    assert plot.main([str(tmp_path / "nowhere")]) == 2


def test_early_stopping_without_validation_is_one_line_before_training(jsb_root, tmp_path, monkeypatch):
    # Lightning itself raised a RuntimeError traceback at the end of the first epoch.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MusicrnnError, match="EarlyStopping watches val/nll") as e:
        train.make_cli(["--config", str(ROOT / "configs" / "jsb" / "rnn.yaml"), "--data.root", str(jsb_root),
                        "--trainer.limit_val_batches", "0"])
    assert "\n" not in str(e.value)
    train.make_cli(["--config", str(ROOT / "configs" / "jsb" / "rnn.yaml"), "--data.root", str(jsb_root),
                    "--trainer.limit_val_batches", "0.5"])  # some validation: fine


@pytest.mark.parametrize("files", CASES.values(), ids=CASES.keys())
def test_every_config_instantiates(files, jsb_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = train.make_cli([*(a for c in files for a in ("--config", str(c))), "--data.root", str(jsb_root)])
    class_path = cli.config.model.class_path
    assert type(cli.model).__name__ == class_path.rsplit(".", 1)[-1]
    assert isinstance(cli.model, torch.nn.Module) and cli.trainer is not None


def test_data_statistics_command(jsb_root, tmp_path):
    out = subprocess.run([sys.executable, "-m", "musicrnn.data", "jsb", "--root", str(jsb_root),
                          "--data-dir", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[1].split()[:2] == ["train", "6"] and lines[3].split()[:2] == ["test", "3"]
    bad = subprocess.run([sys.executable, "-m", "musicrnn.data", "nope"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: unknown dataset")
