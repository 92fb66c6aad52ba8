import os
import pickle
import zipfile

import numpy as np
import pytest

from conftest import scale_piece, write_benchmark, write_midi
from musicrnn.corpora import (CorpusError, download, load_benchmark_pickle, load_corpus, load_folder,
                              split_of)


class WritesAFile:
    """A pickle payload that would create a file if the loader ran code from it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_benchmark_pickle_round_trip(jsb_root):
    data = write_benchmark(jsb_root, sizes=(5, 2, 3), seed=3)
    corpus = load_benchmark_pickle(jsb_root / "JSB Chorales.pickle")
    assert [len(corpus[s]) for s in ("train", "valid", "test")] == [5, 2, 3]
    seq = data["valid"][1]
    roll = corpus["valid"][1]
    assert roll.shape == (len(seq), 88)
    assert [tuple(np.flatnonzero(f) + 21) for f in roll] == [tuple(f) for f in seq]


def test_code_running_pickle_is_refused(tmp_path):
    target = tmp_path / "pwned"
    bad = tmp_path / "JSB Chorales.pickle"
    bad.write_bytes(pickle.dumps({"train": [[WritesAFile(str(target))]], "valid": [], "test": []}))
    with pytest.raises(CorpusError, match="refused to load"):
        load_benchmark_pickle(bad)
    assert not target.exists()


@pytest.mark.parametrize("payload, match", [
    ([1, 2, 3], "expected a dict"),
    ({"train": [[(60,)]], "valid": [[(200,)]], "test": []}, "outside 21..108"),
    ({"train": [[("x",)]], "valid": [], "test": []}, "malformed"),
    ({"train": [[5]], "valid": [], "test": []}, "malformed"),
])
def test_malformed_pickles(tmp_path, payload, match):
    path = tmp_path / "p.pickle"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(CorpusError, match=match):
        load_benchmark_pickle(path)


def test_folder_uses_split_subfolders_and_cache(midi_folder, tmp_path):
    corpus = load_corpus("folder", str(midi_folder), tmp_path / "data", frames_per_beat=1)
    assert [len(corpus[s]) for s in ("train", "valid", "test")] == [4, 2, 2]
    caches = list((tmp_path / "data" / "cache").glob("*.npz"))
    assert len(caches) == 1
    again = load_corpus("folder", str(midi_folder), tmp_path / "data", frames_per_beat=1)
    for a, b in zip(corpus["train"], again["train"]):
        np.testing.assert_array_equal(a, b)
    load_corpus("folder", str(midi_folder), tmp_path / "data", frames_per_beat=2)  # new key, new cache
    assert len(list((tmp_path / "data" / "cache").glob("*.npz"))) == 2


def test_folder_skips_bad_files_with_one_warning_each(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    for i in range(6):
        write_midi(root / f"ok{i}.mid", scale_piece(i))
    (root / "broken.mid").write_bytes(b"not midi at all")
    lines = []
    corpus = load_folder(str(root), 1, None, False, seed=0, warn=lines.append)
    assert sum(len(v) for v in corpus.values()) == 6
    assert lines[0].startswith("warning: skipped broken.mid")
    assert "1 of 7 files" in lines[-1]


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="holds no MIDI"):
        load_folder(str(tmp_path / "empty"), 1, None, False, 0)
    with pytest.raises(CorpusError, match="does not exist"):
        load_folder(str(tmp_path / "missing"), 1, None, False, 0)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.mid").write_bytes(b"junk")
    with pytest.raises(CorpusError, match="none of the 1 files"):
        load_folder(str(tmp_path / "junk"), 1, None, False, 0, warn=lambda _: None)


def test_zip_with_hostile_member_names(tmp_path):
    src = write_midi(tmp_path / "x.mid", scale_piece())
    z = tmp_path / "c.zip"
    with zipfile.ZipFile(z, "w") as f:
        for i in range(5):
            f.write(src, f"../../evil{i}.mid")
    corpus = load_folder(str(z), 1, None, False, seed=0)
    assert sum(len(v) for v in corpus.values()) == 5
    assert not list(tmp_path.parent.glob("evil*.mid"))


def test_seeded_split_depends_on_names_only():
    names = [f"piece{i}.mid" for i in range(300)]
    splits = [split_of(n, 0) for n in names]
    assert [split_of(n, 0) for n in reversed(names)] == splits[::-1]
    assert 0.7 < splits.count("train") / 300 < 0.9
    assert [split_of(n, 1) for n in names] != splits


def test_download_is_atomic(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(100_000))
    dest = download(src.as_uri(), tmp_path / "out" / "x.pickle")
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(CorpusError, match="could not download"):
        download((tmp_path / "nope").as_uri(), tmp_path / "out" / "y.pickle")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.pickle"]


def test_unknown_dataset_and_missing_root(tmp_path):
    with pytest.raises(CorpusError, match="unknown dataset"):
        load_corpus("nope")
    with pytest.raises(CorpusError, match="not found"):
        load_corpus("jsb", str(tmp_path))
