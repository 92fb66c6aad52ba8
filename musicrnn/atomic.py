"""Atomic file writes: a file appears complete, with a normal file's permissions, or not at all.

Every writer of the project goes through here (checkpoints, downloads, the parse cache, generated
samples), so all of them flush to disk, get the same permissions and clean up after a failure.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# What ``open()`` would give a new file: 0666 less the umask (mkstemp's files are 0600). Read once at
# import: reading the umask means setting it, which is not safe while other threads create files.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def write_beside(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Run ``write(f)`` on a hidden temporary file in ``path``'s folder (created if needed) and return
    the temporary file's name, flushed to disk and closed; the caller ``os.replace``s it onto ``path``
    (several files can so appear together). If ``write`` fails the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename, so a crash cannot leave a renamed empty file
        os.chmod(tmp, FILE_MODE)
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(f)``: a crash or an error mid-write leaves the previous file as it was."""
    tmp = write_beside(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
