"""Checkpoints: written atomically, read without running code, validated before use.

A leaf module: it imports no model (``musicrnn.models.load_model`` rebuilds one from a checkpoint).

A checkpoint is Lightning's dict. What rebuilds a model is ``hyper_parameters`` (the constructor's
arguments), ``musicrnn_model`` (the class name), ``state_dict`` and ``datamodule_hyper_parameters``
(the data settings, which generation needs for frames per beat). ``slim`` keeps only those.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from musicrnn.atomic import atomic_write
from musicrnn.errors import MusicrnnError

SLIM_KEYS = ("state_dict", "hyper_parameters", "musicrnn_model", "datamodule_hyper_parameters",
             "pytorch-lightning_version", "epoch", "global_step")


class CheckpointError(MusicrnnError):
    """A checkpoint that is missing, unreadable, foreign or does not fit its model."""


def atomic_save(obj, path: str | Path) -> None:
    """``torch.save`` that a crash mid-write cannot leave half done (see ``musicrnn.atomic``)."""
    atomic_write(path, lambda f: torch.save(obj, f))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes through ``atomic_save`` (Lightning's own writes in place)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        atomic_save(checkpoint, path)


def load_state(path: str | Path) -> dict:
    """Read a checkpoint with ``weights_only=True`` (tensors and plain containers only, no code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a model checkpoint (no state_dict)")
    return ckpt


def slim(src: str | Path, dst: str | Path) -> None:
    """Copy of a checkpoint without optimizer and loop state: small, enough to evaluate and generate."""
    ckpt = load_state(src)
    atomic_save({k: ckpt[k] for k in SLIM_KEYS if k in ckpt}, dst)
