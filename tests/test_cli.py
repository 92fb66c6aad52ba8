"""The command lines: each mistake gives one line on stderr, exit code 2 and no traceback."""

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from musicrnn import data, evaluate, generate, plot, train
from musicrnn.cli import run_command
from musicrnn.errors import MusicrnnError
from musicrnn.guard import NonFiniteError

ROOT = Path(__file__).resolve().parents[1]
TINY = {"train": [[(60,), (62, 65), (), (67,)] * 2] * 4, "valid": [[(60,)] * 8], "test": [[(64,)] * 8]}

CASES = {  # arguments -> words the one line must hold
    "dataset": (["--data.dataset", "nope"], ["unknown dataset 'nope'", "jsb", "folder"]),
    "model": (["--model", "Nope"], ["unknown model 'Nope'", "RNN, RNNNADE, RNNRBM"]),
    "root": (["--data.dataset", "folder", "--data.root", "/missing/folder"], ["/missing/folder does not exist"]),
    "batch_size": (["--data.batch_size", "-1"], ["batch_size must be positive", "-1"]),
    "max_epochs": (["--trainer.max_epochs", "abc"], ["--trainer.max_epochs", "expected int", "'abc'"]),
}
MORE_CASES = {  # the same, left to `make test-all` (each run is seconds of imports on a small machine)
    "hidden": (["--model.hidden", "x"], ["--model.hidden: expected int, got 'x'"]),
    "unknown_option": (["--nope", "1"], ["unrecognized arguments: --nope 1"]),
    "config": (["--config", "/missing.yaml"], ["--config", "/missing.yaml"]),
    "lr": (["--model.lr", "-1", "--data.dataset", "jsb", "--data.root", "{data}", "--trainer.max_epochs", "1"],
           ["learning rate", "-1"]),
    "early_stopping_without_validation": (
        ["--config", str(ROOT / "configs" / "jsb" / "rnn.yaml"), "--data.root", "{data}", "--trainer.limit_val_batches",
         "0"], ["EarlyStopping watches val/nll", "--trainer.limit_val_batches 0"]),
}


def run(args: list[str], cwd: Path):
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args, "--checkpoint_dir", str(cwd / "ck"),
                             "--data.data_dir", str(cwd / "cache"), "--trainer.enable_progress_bar", "false"],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_all(cases: dict, tmp: Path) -> dict:
    """All cases at once: ``name -> (exit code, stdout, stderr)``."""
    (tmp / "JSB Chorales.pickle").write_bytes(pickle.dumps(TINY))
    procs = {name: run([a.format(data=tmp) for a in args], tmp) for name, (args, _) in cases.items()}
    return {name: (p.wait(timeout=180), *p.communicate()) for name, p in procs.items()}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    return run_all({**CASES, "debug": (["--model", "Nope", "--debug"], [])}, tmp_path_factory.mktemp("cli"))


@pytest.fixture(scope="module")
def more_outcomes(tmp_path_factory):
    return run_all(MORE_CASES, tmp_path_factory.mktemp("cli"))


def check(outcome, words: list[str], only_line: bool = True) -> None:
    code, out, err = outcome
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in err
    for w in words:
        assert w in lines[-1]
    if only_line:  # found before the trainer exists: nothing else is printed at all
        assert len(lines) == 1, err


@pytest.mark.parametrize("name", CASES)
def test_one_line_and_exit_2(outcomes, name):
    check(outcomes[name], CASES[name][1])


@pytest.mark.slow
@pytest.mark.parametrize("name", MORE_CASES)
def test_more_mistakes(more_outcomes, name):
    check(more_outcomes[name], MORE_CASES[name][1], only_line=name not in ("lr", "early_stopping_without_validation"))


def test_debug_shows_the_traceback(outcomes):
    code, out, err = outcomes["debug"]
    assert code != 0 and "Traceback" in err


def test_nonfinite_training_stops_with_one_line(tmp_path):
    """Recurrent weights of 1e30 overflow on the first batch: every step is non-finite."""
    (tmp_path / "JSB Chorales.pickle").write_bytes(pickle.dumps(TINY))
    p = run(["--data.dataset", "jsb", "--data.root", str(tmp_path), "--data.batch_size", "1", "--model.cell", "relu",
             "--model.init", "identity", "--model.identity_scale", "1e30", "--nonfinite.patience", "2",
             "--trainer.max_epochs", "3", "--trainer.logger", "false"], tmp_path)
    code, err = p.wait(timeout=120), p.communicate()[1]
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: 2 steps in a row had a non-finite loss or gradient (epoch 0, batch 1)")
    assert "Last good checkpoint: none saved yet" in last and "Traceback" not in err


# ---- every command shares the shell of musicrnn.cli: the same one line and exit code 2 on bad input
COMMANDS = {"train": train.main, "generate": generate.main, "evaluate": evaluate.main, "data": data.main,
            "plot": plot.main}


BAD_INPUT = [  # (command, arguments, words of the one line)
    ("train", ["--data.dataset", "nope"], "unknown dataset 'nope'"),
    ("generate", ["--ckpt", "{tmp}/none.ckpt", "--out", "{tmp}/s"], "none.ckpt not found"),
    ("generate", ["--steps", "many"], "invalid int value: 'many'"),
    ("evaluate", ["{tmp}/none.ckpt", "--dataset", "jsb"], "none.ckpt not found"),
    ("evaluate", ["{tmp}/none.ckpt", "--dataset", "nope"], "invalid choice: 'nope'"),
    ("evaluate", ["{tmp}/none.ckpt", "--dataset", "jsb", "--batch-size", "0"], "--batch-size must be at least 1"),
    ("evaluate", ["{tmp}/none.ckpt", "--dataset", "jsb", "--seed", str(2 ** 64)],
     "argument --seed: must be from -2^63"),
    ("generate", ["--seed", str(-2 ** 63 - 1)], "argument --seed: must be from -2^63 to 2^64 - 1"),
    ("generate", ["--seed", "one"], "invalid seed value: 'one'"),
    ("data", ["nope"], "unknown dataset 'nope'"),
    ("data", ["jsb", "--frames-per-beat", "x"], "invalid int value: 'x'"),
    ("plot", ["{tmp}/nowhere"], "metrics.csv not found"),
    ("plot", ["{tmp}/garbled"], "is not a metrics.csv"),
    ("plot", [], "the following arguments are required: runs"),
]


@pytest.mark.parametrize("command, args, words", BAD_INPUT, ids=lambda v: v if isinstance(v, str) else None)
def test_every_command_one_line_exit_2(command, args, words, tmp_path, capsys):
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "metrics.csv").write_text("epoch,step,val/nll\n0,1,abc\n")
    code = COMMANDS[command]([a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and words in err, err


def test_debug_raises_and_bugs_keep_their_traceback(capsys):
    def bad_input(argv):
        raise MusicrnnError(f"bad\n  input {argv}")

    assert run_command(bad_input, ["a"]) == 2
    assert capsys.readouterr().err == "error: bad input ['a']\n"
    with pytest.raises(MusicrnnError):
        run_command(bad_input, ["--debug"])
    with pytest.raises(ZeroDivisionError):  # a bug is not an input error: its traceback shows
        run_command(lambda argv: 1 / 0, [])
    assert run_command(lambda argv: (_ for _ in ()).throw(NonFiniteError("diverged")), []) == 1
