"""musicrnn.atomic: the one way the project writes files."""

import os
import stat

import numpy as np
import pytest

from musicrnn import atomic
from musicrnn.corpora import CorpusError, _save_cache, download


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_failing_write_keeps_the_old_file_and_leaves_no_part(tmp_path):
    path = tmp_path / "a.bin"
    atomic.atomic_write(path, lambda f: f.write(b"old"))

    def half_then_fail(f):
        f.write(b"new but cut short")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic.atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_a_normal_file_mode_not_mkstemps_private_one(tmp_path):
    atomic.atomic_write(tmp_path / "a.bin", lambda f: f.write(b"x"))
    assert mode(tmp_path / "a.bin") == atomic.FILE_MODE == 0o666 & ~atomic._UMASK
    assert atomic.FILE_MODE & 0o044  # readable by others under any usual umask (022, 002)


def test_download_and_cache_write_through_it(tmp_path):
    """A download (a file:// URL: urllib's own handler, no network) and the parse cache: normal mode,
    nothing left behind; a failing download leaves no partial file."""
    (tmp_path / "src.pickle").write_bytes(b"benchmark")
    dest = download((tmp_path / "src.pickle").as_uri(), tmp_path / "dl" / "JSB Chorales.pickle")
    assert dest.read_bytes() == b"benchmark" and mode(dest) == atomic.FILE_MODE
    with pytest.raises(CorpusError):
        download((tmp_path / "missing.pickle").as_uri(), tmp_path / "dl" / "other.pickle")
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["JSB Chorales.pickle"]

    roll = np.zeros((3, 88), np.uint8)
    _save_cache(tmp_path / "cache" / "c.npz", {"train": [roll], "valid": [], "test": [roll]})
    assert mode(tmp_path / "cache" / "c.npz") == atomic.FILE_MODE
    (tmp_path / "cache" / "d.npz").mkdir()  # the final rename fails: a folder is in the way
    with pytest.raises(OSError):
        _save_cache(tmp_path / "cache" / "d.npz", {"train": [roll], "valid": [], "test": [roll]})
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["c.npz", "d.npz"]
