"""Seeded train/valid/test splits of named files: a file's split follows from its name and the seed."""

from __future__ import annotations

import hashlib

SPLITS = ("train", "valid", "test")


def _unit(name: str, seed: int) -> float:
    """A number in [0, 1) drawn from the name and the seed alone."""
    return int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:8], 16) / 16**8


def split_of(name: str, seed: int = 0, valid: float = 0.1, test: float = 0.1) -> str:
    """A fixed split from the file's name alone, so it never depends on listing order."""
    u = _unit(name, seed)
    return "test" if u < test else "valid" if u < test + valid else "train"


def split_names(names: list[str], seed: int = 0) -> list[str]:
    """``split_of`` for each name, then, with three or more names, every split made non-empty.

    An 80/10/10 split of a handful of files leaves valid or test empty most of the time (four files:
    1 - 2 * 0.9**4 + 0.8**4 = 90%). An empty split takes the file with the smallest draw from a split
    that has two or more, so the result still depends on the names alone, not on their order.
    """
    splits = [split_of(n, seed) for n in names]
    if len(names) >= len(SPLITS):
        order = sorted(range(len(names)), key=lambda i: (_unit(names[i], seed), names[i]))
        for need in ("test", "valid"):
            if need not in splits:
                donor = next(i for i in order if splits.count(splits[i]) > 1)
                splits[donor] = need
    return splits
