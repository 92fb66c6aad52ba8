"""The models, listed once: ``MODELS`` names every class a checkpoint or ``--model`` may use, and
``load_model`` rebuilds one from a checkpoint.

``base.py`` holds ``SequenceModel`` (the recurrent core, training, metrics, sampling); ``rnn.py``,
``nade.py`` and ``rbm.py`` each add one per-frame distribution.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from musicrnn.checkpoint import CheckpointError, load_state
from musicrnn.models.base import SequenceModel
from musicrnn.models.nade import RNNNADE
from musicrnn.models.rbm import RNNRBM
from musicrnn.models.rnn import RNN

__all__ = ["MODELS", "RNN", "RNNNADE", "RNNRBM", "SequenceModel", "load_model"]

# Class name -> class. A checkpoint stores the name (``musicrnn_model``), so renaming a module keeps
# old checkpoints loadable.
MODELS = {c.__name__: c for c in (RNN, RNNNADE, RNNRBM)}


def load_model(path: str | Path):
    """Checkpoint -> ``(model in eval mode, data settings dict)``, after checking class and shapes."""
    ckpt = load_state(path)
    name = ckpt.get("musicrnn_model")
    if name not in MODELS:
        raise CheckpointError(f"{path} is not a musicrnn checkpoint (model class {name!r}, expected one "
                              f"of {', '.join(MODELS)})")
    cls = MODELS[name]
    known = set(inspect.signature(cls.__init__).parameters) | set(inspect.signature(SequenceModel.__init__).parameters)
    hp = {k: v for k, v in dict(ckpt.get("hyper_parameters", {})).items() if k in known and k != "self"}
    hp["init_from"] = None  # the weights below replace any pre-training
    try:
        model = cls(**hp)
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path} does not fit a {name} with its own settings: {first}") from None
    return model.eval(), dict(ckpt.get("datamodule_hyper_parameters") or {})
