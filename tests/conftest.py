import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader


def tiny_batch(batch=3, time=10, seed=0):
    """``{"x": (batch, time, 88), "mask": (batch, time)}`` with one shorter, padded sequence."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, time, 88, generator=g) < 0.1).float()
    mask = torch.ones(batch, time, dtype=torch.bool)
    mask[0, time - 3:] = False
    x[~mask] = 0
    return {"x": x, "mask": mask}


@pytest.fixture
def fit_tiny():
    """``fit_tiny(model, callbacks, batches=1, epochs=1, **trainer_kwargs)``: a real CPU Trainer on tiny
    random batches."""
    def fit(model, callbacks=(), batches=1, epochs=1, **trainer_kwargs):
        data = DataLoader([tiny_batch(seed=i) for i in range(batches)], batch_size=None)
        kwargs = {"logger": False, **trainer_kwargs}
        trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks),
                            **kwargs)
        trainer.fit(model, train_dataloaders=data)
        return trainer
    return fit
