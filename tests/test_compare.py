"""``python -m musicrnn.data compare`` on a made-up folder, manifest and benchmark pickle."""

import csv
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import scale_piece, write_midi
from musicrnn import data
from musicrnn.compare import frame_jaccard, read_manifest
from musicrnn.corpora import CorpusError

ROOT = Path(__file__).resolve().parents[1]
A_MINOR = [(69, 0, 1), (71, 1, 2), (72, 2, 3), (74, 3, 4), (76, 4, 6), (72, 6, 7), (68, 7, 8), (69, 8, 12),
           (45, 0, 12), (52, 4, 8)]


def benchmark_sequence(notes, shift):
    """The benchmark's frames at two per beat, written out independently: frame j holds the pitches that
    sound at the instant j + 1.5 (start < instant <= end)."""
    length = int(2 * max(e for _, _, e in notes) - 1.5) + 1
    return [tuple(sorted(p + shift for p, s, e in notes if 2 * s < j + 1.5 <= 2 * e)) for j in range(length)]


@pytest.fixture
def made_up(tmp_path):
    """Four readable pieces and a corrupt one under songs/, a manifest and a pickle that match them:
    the benchmark moved the D major piece by -2 and the A minor one by +3; it says -5 for the last
    C major piece (a transposition the notes do not support) and leaves one blank."""
    root = tmp_path / "songs"
    (root / "train").mkdir(parents=True)
    pieces = {"train/c.mid": (scale_piece(0), 0, None), "train/d.mid": (scale_piece(2), -2, 2),
              "train/am.mid": (A_MINOR, 3, 0), "train/odd.mid": (scale_piece(0), -5, None),
              "train/blank.mid": (scale_piece(7), None, None)}
    sequences, rows = [], []
    for i, (name, (notes, shift, key_number)) in enumerate(pieces.items()):
        write_midi(root / name, notes, key_number=key_number)
        sequences.append(benchmark_sequence(notes, 0 if shift is None else shift))
        rows.append({"path_in_zip": f"songs/{name}", "split": "train", "seq_index": i,
                     "transpose_semitones": "" if shift is None else shift})
    (root / "train" / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    rows.append({"path_in_zip": "songs/train/broken.mid", "split": "train", "seq_index": 0,
                 "transpose_semitones": 0})
    with open(tmp_path / "songs_manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(tmp_path / "Made-up.pickle", "wb") as f:
        pickle.dump({"train": sequences, "valid": [], "test": []}, f)
    return root


def test_compare_prints_the_agreement(made_up, capsys):
    assert data.main(["compare", str(made_up), "--benchmark", str(made_up.parent / "Made-up.pickle"),
                      "--misses"]) == 0
    out = [line for line in capsys.readouterr().out.splitlines() if line]  # rich's progress leaves a blank
    assert "warning: skipped train/broken.mid: cannot be read" in out[0]
    assert out[1:3] == ["train/blank.mid: transposition +5 here, unknown in the benchmark; frame Jaccard 0.000",
                        "train/odd.mid: transposition +0 here, -5 in the benchmark; frame Jaccard 0.000"]
    figures = [line.split()[-4:-1] for line in out[-3:]]
    # transposition: c, d, am agree, odd does not, blank is unknown; rolls: all but odd match,
    # blank's sequence was left untransposed and G major moves by +5, so it fails too
    assert figures == [["3", "/", "4"], ["3", "/", "5"], ["4", "/", "4"]]


def test_compare_from_a_zip_with_the_default_manifest(made_up, tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "songs.zip", "w") as z:
        for p in sorted(made_up.rglob("*.mid")):
            z.write(p, "songs/" + p.relative_to(made_up).as_posix())
    out = subprocess.run([sys.executable, "-m", "musicrnn.data", "compare", str(tmp_path / "songs.zip"),
                          "--benchmark", str(tmp_path / "Made-up.pickle")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "Traceback" not in out.stderr
    assert out.stdout.splitlines()[-3].split()[-4:-1] == ["3", "/", "4"]


@pytest.mark.parametrize("change, words", [
    (lambda m: m.unlink(), "manifest"),
    (lambda m: m.write_text("path,split\nx.mid,train\n"), "needs the columns"),
    (lambda m: m.write_text("path,split,seq_index,transpose_semitones\ntrain/c.mid,train,nine,0\n"),
     "line 2: not a valid row"),
    (lambda m: m.write_text("path,split,seq_index,transpose_semitones\ntrain/c.mid,train,99,0\n"),
     "the benchmark has 5"),
    (lambda m: m.write_text("path,split,seq_index,transpose_semitones\nnone.mid,train,0,0\n"),
     "is named in"),
])
def test_bad_manifests_give_one_error_line(made_up, capsys, change, words):
    change(made_up.parent / "songs_manifest.csv")
    assert data.main(["compare", str(made_up), "--benchmark", str(made_up.parent / "Made-up.pickle")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0]


def test_read_manifest_blank_transposition(made_up):
    entries = read_manifest(made_up.parent / "songs_manifest.csv")
    assert entries["songs/train/blank.mid"] == {"split": "train", "seq_index": 4, "shift": None}
    assert entries["songs/train/d.mid"]["shift"] == -2
    with pytest.raises(CorpusError, match="cannot be read"):
        read_manifest(made_up.parent / "missing.csv")


def test_frame_jaccard_counts_a_length_difference():
    a = np.zeros((4, 88), np.uint8)
    a[:, 40] = 1
    assert frame_jaccard(a, a) == 1.0
    assert frame_jaccard(a, a[:2]) == 0.5
    assert frame_jaccard(a[:0], a[:0]) == 1.0


def test_folder_with_benchmark_sampling_gives_the_benchmark_rolls(made_up, tmp_path):
    from musicrnn.corpora import load_benchmark_pickle, load_corpus

    corpus = load_corpus("folder", str(made_up), tmp_path / "data", frames_per_beat=2, sample_at=1.5)
    bench = load_benchmark_pickle(tmp_path / "Made-up.pickle")["train"]
    rolls = dict(zip(["am", "blank", "c", "d", "odd"], corpus["train"]))  # sorted by name; broken skipped
    for name, index in (("c", 0), ("d", 1), ("am", 2)):
        np.testing.assert_array_equal(rolls[name], bench[index])
    rounded = load_corpus("folder", str(made_up), tmp_path / "data", frames_per_beat=2)
    assert len(rounded["train"][2]) == len(rolls["c"]) + 1  # rounding keeps the first frame
