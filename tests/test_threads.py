"""``train.py --threads``: one thread for small cores, the free cores for large ones, or what is asked."""

import os

import pytest

from musicrnn.errors import MusicrnnError
from musicrnn.threads import SMALL_HIDDEN, choose_threads, free_cores


def test_small_cores_get_one_thread_and_a_request_wins():
    assert choose_threads(300) == 1
    assert choose_threads(SMALL_HIDDEN) == 1
    assert choose_threads(300, requested=3) == 3
    assert 1 <= choose_threads(4 * SMALL_HIDDEN) <= (os.cpu_count() or 1)
    assert 1 <= free_cores(0.05) <= (os.cpu_count() or 1)


def test_negative_threads_is_one_line_error():
    with pytest.raises(MusicrnnError, match="--threads must be 0"):
        choose_threads(300, requested=-1)
