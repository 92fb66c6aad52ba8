"""``evaluate``: the benchmark's nll of a checkpoint, with the RNN-RBM's AIS budget passed explicitly."""

import torch

from musicrnn.ais import exact_log_z
from musicrnn.checkpoint import atomic_save
from musicrnn.corpora import load_corpus
from musicrnn.data import collate
from musicrnn.evaluate import evaluate
from musicrnn.models import RNNRBM
from musicrnn.models.rbm import free_energy


def tiny_rbm_checkpoint(path):
    """An RNN-RBM small enough (10 hidden units) for exact log Z, with sharp random weights."""
    torch.manual_seed(0)
    model = RNNRBM(hidden=12, rbm_hidden=10)
    with torch.no_grad():
        model.W.mul_(150)  # from 0.01 to about 1.5: a many-moded RBM, hard for a poor AIS
    atomic_save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                 "musicrnn_model": "RNNRBM", "datamodule_hyper_parameters": {"dataset": "jsb"}}, path)
    return model.eval()


def test_rbm_nll_matches_exact_enumeration_and_budget_is_explicit(jsb_root, tmp_path):
    model = tiny_rbm_checkpoint(tmp_path / "rbm.ckpt")
    test = load_corpus("jsb", str(jsb_root), tmp_path / "data")["test"]
    b = collate([torch.from_numpy(r) for r in test])
    with torch.no_grad():  # the exact benchmark nll, by enumerating the 2^10 hidden states of each frame
        cond = model.core(b["x"])[0][b["mask"]]
        b_v, b_h, v = model.to_bv(cond).double(), model.to_bh(cond).double(), b["x"][b["mask"]].double()
        exact = (free_energy(v, b_v, b_h, model.W.double()) + exact_log_z(b_v, b_h, model.W.double())).mean()
    kw = {"data_dir": str(tmp_path / "data"), "progress": False}
    full = evaluate(str(tmp_path / "rbm.ckpt"), "jsb", str(jsb_root), ais_bias_frames=20, **kw)
    assert full["frames"] == len(v)
    assert abs(full["nll"] - exact.item()) < 4 * full["nll_stderr"] + 0.01, (full, exact)
    assert abs(full["ais_bias"]) < 4 * full["ais_bias_stderr"] + 0.01 and full["ais_bias_sample"] >= 20
    cheap = evaluate(str(tmp_path / "rbm.ckpt"), "jsb", str(jsb_root), ais_runs=2, ais_steps=5, **kw)
    assert cheap["nll_stderr"] > 2 * full["nll_stderr"]  # the budget given is the budget used
    assert "ais_bias" not in cheap
