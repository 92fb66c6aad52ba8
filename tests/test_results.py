"""scripts/results.py on a tiny real run: promote it, then check it into a RESULTS.md."""

import importlib.util
import json
from pathlib import Path

import matplotlib.image
import pytest

from musicrnn import train
from musicrnn.evaluate import evaluate

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("results", ROOT / "scripts" / "results.py")
results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results)


@pytest.fixture
def promoted_nade(jsb_root, tmp_path, monkeypatch):
    """A 2-epoch RNN-NADE run on the tiny corpus, promoted into the repository ``tmp_path/repo``."""
    monkeypatch.chdir(tmp_path)
    assert train.main(["--model", "RNNNADE", "--model.hidden", "16", "--model.nade_hidden", "8",
                       "--data.dataset", "jsb", "--data.root", str(jsb_root), "--trainer.max_epochs", "2",
                       "--run_name", "tiny", "--trainer.enable_progress_bar", "false",
                       "--samples.every_n_epochs", "0"]) == 0
    config = tmp_path / "tiny.yaml"
    config.write_text("# python train.py --config tiny.yaml --trainer.max_epochs 2\nmodel: {}\n")
    repo = tmp_path / "repo"
    assert results.main(["--repo", str(repo), "promote", "checkpoints/tiny", "--corpus", "jsb",
                         "--model", "rnn_nade", "--config", str(config), "--sample-steps", "16"]) == 0
    return repo


def test_promote_writes_checkpoint_facts_curves_and_sample(promoted_nade, tmp_path):
    repo = promoted_nade
    facts = json.loads((repo / "checkpoints/jsb/rnn_nade.json").read_text())
    summary = json.loads((tmp_path / "checkpoints/tiny/summary.json").read_text())
    assert (repo / "checkpoints/jsb/rnn_nade.ckpt").read_bytes() == (tmp_path / "checkpoints/tiny/model.ckpt").read_bytes()
    assert facts["valid_nll"] == summary["val/nll"] and facts["parameters"] == summary["parameters"]
    assert facts["epochs"] == 2 and facts["test"]["nll"] == summary["test/nll"]
    assert facts["best_epoch"] in (1, 2) and 0 < facts["valid_frame_acc"] < 1
    assert facts["command"] == "python train.py --config tiny.yaml --trainer.max_epochs 2"
    for png in (facts["curves"], facts["sample"]["png"]):
        image = matplotlib.image.imread(repo / png)
        assert image.shape[0] > 100 and image[..., :3].std() > 0.01
    assert (repo / facts["sample"]["midi"]).stat().st_size > 0


def test_check_rewrites_the_table_and_reports_a_tampered_figure(promoted_nade, jsb_root, tmp_path, capsys):
    repo, row = promoted_nade, ("jsb", "rnn_nade")
    summary = json.loads((tmp_path / "checkpoints/tiny/summary.json").read_text())
    tampered = {"ll": round(-summary["test/nll"] + 0.01, 3), "stderr": None, "acc": summary["test/frame_acc"],
                "bias": None, "bias_stderr": None}
    page = repo / "RESULTS.md"
    page.write_text(f"# Results\n\nintro\n\n{results.render(results.promoted(repo), {row: tampered})}\n\n"
                    "## Ablation\nkept\n")
    assert results.main(["--repo", str(repo), "check", "--root", str(jsb_root),
                         "--data-dir", str(tmp_path / "data")]) == 0
    direct = evaluate(str(repo / "checkpoints/jsb/rnn_nade.ckpt"), "jsb", str(jsb_root),
                      data_dir=str(tmp_path / "data"), progress=False)
    text = page.read_text()
    assert text.startswith("# Results\n\nintro\n\n") and text.endswith("## Ablation\nkept\n")
    line = next(line for line in text.splitlines() if line.startswith("| RNN-NADE (ours)"))
    assert line.split("|")[3].strip() == f"{-direct['nll']:.3f}"
    assert line.split("|")[5].strip() == f"{100 * direct['frame_acc']:.2f}"
    assert "| RNN (ours) | not trained yet |" in text and "| RNN-NADE, HF (2012) | – | -5.56 |" in text
    assert "docs/samples/jsb-rnn_nade.png" in text and "docs/curves/jsb-rnn_nade.png" in text
    said = capsys.readouterr().out
    assert f"jsb/rnn_nade: test log-lik. {tampered['ll']:.3f} -> {-direct['nll']:.3f} (" in said
    assert "test ACC" not in said  # the untouched accuracy is as committed

    meta = repo / "checkpoints/jsb/rnn_nade.json"  # another checkpoint promoted, not yet re-measured:
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "epochs": 5, "test": {"nll": 1.0}}))
    assert results.main(["--repo", str(repo), "check", "--root", str(jsb_root), "--models", "rnn"]) == 0
    assert "| RNN-NADE (ours) " in page.read_text() and "| -1.000 (as trained) |" in page.read_text()
    assert "jsb/rnn_nade: not re-measured; figures as trained" in capsys.readouterr().out


def test_bad_input_is_one_line(promoted_nade, tmp_path, capsys):
    repo = str(promoted_nade)
    assert results.main(["--repo", repo, "check", "--root", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("error: data root")
    assert results.main(["--repo", repo, "check", "--root", str(tmp_path)]) == 2  # a folder without the pickle
    assert capsys.readouterr().err == f"error: {tmp_path}/JSB Chorales.pickle not found: --root holds the " \
                                      "benchmark pickles\n"
    assert results.main(["--repo", repo, "promote", "checkpoints/tiny", "--corpus", "jsb", "--model", "rnn"]) == 2
    assert "holds a RNNNADE, not --model rnn" in capsys.readouterr().err


def test_promote_a_checkpoint_without_its_run(promoted_nade, jsb_root, tmp_path):
    summary = json.loads((tmp_path / "checkpoints/tiny/summary.json").read_text())
    repo = tmp_path / "other"
    assert results.main(["--repo", str(repo), "promote", "--ckpt", "checkpoints/tiny/model.ckpt", "--corpus", "jsb",
                         "--model", "rnn_nade", "--epochs", "93", "--train-seconds", "134", "--test-nll", "8.67",
                         "--measure-valid", "--root", str(jsb_root), "--note", "from the README",
                         "--sample-steps", "8"]) == 0
    facts = json.loads((repo / "checkpoints/jsb/rnn_nade.json").read_text())
    assert facts["epochs"] == 93 and facts["train_seconds"] == 134 and facts["test"]["nll"] == 8.67
    assert abs(facts["valid_nll"] - summary["val/nll"]) < 1e-5  # measured now, as training scored it
    assert facts["curves"] is None and facts["note"] == "from the README"
    assert facts["source"].endswith("given by hand: epochs, train_seconds, test nll; validation measured by "
                                    "evaluate() after training")
    # The same checkpoint with the curves of a rerun of its config (here: the tiny run itself).
    assert results.main(["--repo", str(repo), "promote", "--ckpt", "checkpoints/tiny/model.ckpt", "--corpus", "jsb",
                         "--model", "rnn_nade", "--curves-from", "checkpoints/tiny", "--sample-steps", "8"]) == 0
    facts = json.loads((repo / "checkpoints/jsb/rnn_nade.json").read_text())
    assert facts["curves_from"] == {"run": "tiny", "valid_nll": summary["val/nll"], "epochs": 2}
    assert matplotlib.image.imread(repo / facts["curves"]).shape[0] > 100
    assert "[png of a rerun](docs/curves/jsb-rnn_nade.png)" in results.ours_row("RNN-NADE", facts, None)
    assert results.main(["--repo", str(repo), "promote", "checkpoints/tiny", "--corpus", "jsb", "--model", "rnn_nade",
                         "--curves-from", "checkpoints/tiny"]) == 2  # a run draws its own curves


def test_rbm_rows_differ_beyond_three_standard_errors():
    rows = {("nottingham", "rnn_rbm"): {"parameters": 10, "epochs": 3, "train_seconds": 9000.0}}
    fig = {"ll": -2.5, "stderr": 0.01, "acc": 0.7, "bias": 0.004, "bias_stderr": 0.002}
    page = results.render(rows, {("nottingham", "rnn_rbm"): fig})
    assert "| RNN-RBM (ours) | – | -2.500 ± 0.010 | +0.004 ± 0.002 | 70.00 | 10 | 3 | 2.5 h |" in page
    old = results.committed_figures(page)[("nottingham", "rnn_rbm")]
    assert old == {**fig, "as_trained": False, "facts": ("–", "10", "3", "2.5 h")}
    near = {"nll": 2.5 + 0.04, "nll_stderr": 0.01, "frame_acc": 0.1}  # 2.8 standard errors of the difference
    assert results.differences(("nottingham", "rnn_rbm"), near, old) == []
    far = {"nll": 2.5 + 0.05, "nll_stderr": 0.01, "frame_acc": 0.7}
    assert results.differences(("nottingham", "rnn_rbm"), far, old)[0].startswith("test log-lik. -2.500 -> -2.550")
    rounded = {"nll": 2.5 + 0.0005, "nll_stderr": 0.0, "frame_acc": 0.7}  # an almost exact AIS, table rounding
    assert results.differences(("nottingham", "rnn_rbm"), rounded, {**old, "stderr": None}) == []
    exact = {"nll": 2.5 + 0.002, "nll_stderr": 0.0, "frame_acc": 0.7}
    assert results.differences(("nottingham", "rnn"), exact, old) == ["test log-lik. -2.500 -> -2.502"]


def test_a_rows_tiny_ais_stderr_survives_a_rewrite():
    """A row not re-measured is read back from the table: "± 0.000" read as 0.0 used to be dropped."""
    rows = {("musedata", m): {"parameters": 10, "epochs": 3, "train_seconds": 60.0} for m in ("rnn", "rnn_rbm")}
    figs = {("musedata", "rnn_rbm"): {"ll": -5.9485, "stderr": 0.0003, "acc": 0.3, "bias": None, "bias_stderr": None},
            ("musedata", "rnn"): {"ll": -7.1, "stderr": 0.0, "acc": 0.3, "bias": None, "bias_stderr": None}}
    page = results.render(rows, figs)
    again = results.render(rows, results.committed_figures(page))
    assert "| RNN-RBM (ours) | – | -5.949 ± 0.000 |" in again and "| RNN (ours) | – | -7.100 |" in again
