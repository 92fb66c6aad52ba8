"""Polyphonic music models (RNN, RNN-NADE, RNN-RBM) on piano rolls, with PyTorch Lightning.

Where things are:
    pianoroll.py    music files <-> binary (time, 88) rolls, and what a roll holds (notes, polyphony)
    corpora.py      the corpora (benchmark pickles, Bach, folders) as lists of rolls; cache; download
    data.py         PianorollDataModule: batches, length bucketing; ``python -m musicrnn.data``
    core.py         the recurrent core;  models/: the models and ``load_model`` (see models/__init__.py)
    metrics.py, optim.py, callbacks.py, guard.py, tracking.py    what training uses around the model
    checkpoint.py, atomic.py    reading checkpoints safely; writing any file atomically
    train.py, generate.py, evaluate.py, plot.py    the commands;  cli.py, errors.py: their shared shell
    render.py       piano-roll PNG and WAV
"""
