"""What validating an RNN-RBM costs next to training it, per corpus (the configs' validation settings).

    python benchmarks/rbm_validation_cost.py nottingham [--root ../shared/data/pickle]

Times 60 training batches of the bare model (CD-15, 16 chunks of 200 frames) to get training frames per
second and so an epoch's training time, then scoring the first validation batch with the validation AIS
budget (10 runs x 100 temperatures) and frame accuracy, and prints validation every 10 epochs as a share
of training time. One thread.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from musicrnn.data import PianorollDataModule  # noqa: E402
from musicrnn.metrics import FrameAccuracy, FrameNLL  # noqa: E402
from musicrnn.models import RNNRBM  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("corpus")
    p.add_argument("--root", default="../shared/data/pickle")
    p.add_argument("--every", type=int, default=10, help="validation every this many epochs")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dm = PianorollDataModule(a.corpus, a.root, batch_size=16, chunk_len=200)
    dm.setup()
    model = RNNRBM(hidden=100, rbm_hidden=150, cd_steps=15, dropout=0.6)
    opt = torch.optim.Adam(model.parameters(), 0.003)
    frames, start = 0, time.perf_counter()
    for i, b in enumerate(dm.train_dataloader()):
        cond, _ = model.core(b["x"])
        loss, _ = model.loss(cond, b["x"], b["mask"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        frames += int(b["mask"].sum())
        if i == 60:
            break
    epoch_s = sum(len(r) for r in dm.splits["train"]) / (frames / (time.perf_counter() - start))
    batch = next(iter(dm.eval_dataloader("valid")))
    start = time.perf_counter()
    with torch.no_grad():
        model.score(batch, FrameNLL(), FrameAccuracy(), ais_runs=model.hparams.val_ais_runs,
                    ais_steps=model.hparams.val_ais_steps)
    val_s = time.perf_counter() - start
    print(f"{a.corpus}: an epoch's training {epoch_s:.1f} s; the first validation batch "
          f"({int(batch['mask'].sum())} frames) {val_s:.1f} s; validation every {a.every} epochs costs "
          f"{val_s / (a.every * epoch_s):.1%} of training time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
