import torch

from musicrnn.data import BucketBatchSampler, PianorollDataModule, collate


def test_bucket_sampler_shards_are_disjoint_and_cover_everything():
    lengths = torch.randint(5, 500, (103,)).tolist()
    shards = [list(BucketBatchSampler(lengths, 8, shuffle=True, seed=1, rank=r, world=3)) for r in range(3)]
    flat = [i for shard in shards for batch in shard for i in batch]
    assert sorted(flat) == list(range(103))  # evaluation: every sequence exactly once, no padding copies
    even = [len(BucketBatchSampler(lengths, 8, True, 1, r, 3, even=True)) for r in range(3)]
    assert len(set(even)) == 1  # training: same number of steps on every rank


def test_bucket_sampler_is_seeded_reshuffled_and_groups_lengths():
    lengths = list(range(1000, 0, -1))
    s = BucketBatchSampler(lengths, 10, shuffle=True, seed=5)
    first = list(s)
    assert list(BucketBatchSampler(lengths, 10, shuffle=True, seed=5)) == first
    s.set_epoch(1)
    assert list(s) != first
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first]
    assert max(spread) < 100  # pools of 500 sorted by length: neighbours in a batch


def test_collate_pads_masks_and_transposes():
    a, b = torch.zeros(3, 88, dtype=torch.uint8), torch.zeros(5, 88, dtype=torch.uint8)
    a[:, 40] = 1
    b[:, 87] = 1
    out = collate([a, b])
    assert out["x"].shape == (2, 5, 88) and out["mask"].tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    assert out["x"][0, 3:].sum() == 0
    torch.manual_seed(0)
    shifted = [collate([a], max_shift=3)["x"][0, 0].nonzero().item() for _ in range(50)]
    assert set(shifted) == set(range(37, 44))


def test_chunking_cuts_training_sequences_only(jsb_root, tmp_path):
    dm = PianorollDataModule("jsb", str(jsb_root), str(tmp_path), batch_size=2, chunk_len=4)
    dm.setup()
    plain = PianorollDataModule("jsb", str(jsb_root), str(tmp_path), batch_size=2)
    plain.setup()
    assert max(len(r) for r in dm.splits["train"]) == 4
    assert torch.equal(torch.cat(dm.splits["train"]), torch.cat(plain.splits["train"]))
    assert [len(r) for r in dm.splits["test"]] == [len(r) for r in plain.splits["test"]]
