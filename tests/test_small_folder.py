"""A handful of MIDI files plus corrupt ones, as a new user brings them: statistics and training work."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import scale_piece, write_midi
from musicrnn import evaluate, train
from musicrnn.corpora import load_folder
from musicrnn.splits import split_names

ROOT = Path(__file__).resolve().parents[1]


def small_folder(root: Path, readable: int) -> Path:
    """``readable`` small MIDI files named so that the plain 80/10/10 draw puts every one in train."""
    root.mkdir()
    for i in range(readable):
        write_midi(root / f"song{i}.mid", scale_piece(offset=i, beats=8 + i))
    (root / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    (root / "empty.mid").write_bytes(b"")
    return root


@pytest.mark.parametrize("n", [3, 4, 5, 7])
def test_three_or_more_names_fill_every_split(n):
    for seed in range(20):
        names = [f"song{i}.mid" for i in range(n)]
        splits = split_names(names, seed)
        assert {"train", "valid", "test"} <= set(splits), (seed, splits)
        assert split_names(names[::-1], seed) == splits[::-1]  # the names decide, not their order


def test_large_folders_keep_the_plain_seeded_split():
    names = [f"song{i}.mid" for i in range(200)]
    splits = split_names(names, 0)
    assert 0.7 < splits.count("train") / 200 < 0.9
    assert split_names(names[:2], 0) == split_names(names, 0)[:2]  # fewer than 3: nothing is moved


def test_corrupt_files_take_no_split(tmp_path):
    root = small_folder(tmp_path / "songs", 3)
    corpus = load_folder(str(root), 1, None, False, seed=0, warn=lambda _: None)
    assert [len(corpus[s]) for s in ("train", "valid", "test")] == [1, 1, 1]


def test_statistics_command_prints_every_split(tmp_path):
    for n, rows in ((4, None), (2, "-")):
        root = small_folder(tmp_path / f"songs{n}", n)
        out = subprocess.run([sys.executable, "-m", "musicrnn.data", "folder", "--root", str(root),
                              "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        assert "Traceback" not in out.stderr and "skipped corrupt.mid" in out.stdout
        table = dict(line.split(None, 1) for line in out.stdout.splitlines()
                     if line.split()[:1] in (["train"], ["valid"], ["test"]))
        assert set(table) == {"train", "valid", "test"}
        counts = [int(table[s].split()[0]) for s in ("train", "valid", "test")]
        assert sum(counts) == n and (min(counts) >= 1 if n >= 3 else min(counts) == 0)
        if rows:  # an empty split shows a dash where the pitch range would be
            assert any(table[s].split()[-1] == rows for s in table)


def test_train_on_four_files_then_evaluate_on_two(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = small_folder(tmp_path / "songs", 4)
    assert train.main(["--data.dataset", "folder", "--data.root", str(root), "--model.hidden", "8",
                       "--trainer.max_epochs", "1", "--run_name", "small",
                       "--trainer.enable_progress_bar", "false"]) == 0
    assert (tmp_path / "checkpoints" / "small" / "summary.json").is_file()
    two = small_folder(tmp_path / "two", 2)
    capsys.readouterr()
    assert evaluate.main([str(tmp_path / "checkpoints" / "small" / "model.ckpt"), "--dataset", "folder",
                          "--root", str(two)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the ") and "2 readable files" in err[0]


def test_train_on_two_files_says_what_is_needed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = small_folder(tmp_path / "songs", 2)
    assert train.main(["--data.dataset", "folder", "--data.root", str(root), "--trainer.fast_dev_run", "true",
                       "--trainer.enable_progress_bar", "false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "2 readable files" in err and "at least 3" in err
