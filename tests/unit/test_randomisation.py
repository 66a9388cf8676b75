"""The concealed, reproducible permuted-block allocation."""

import uuid
from collections import Counter

import pytest

from domain.audit import Actor, make_stamp
from domain.errors import Conflict
from domain.randomisation import AllocationSequence, block, sequence

SEED = bytes(range(32))
SYSTEM = make_stamp(Actor("system", "system", "system", "system", "*"))


def test_the_sequence_is_reproducible_from_the_seed():
    assert sequence(SEED, "MINSK", 40) == sequence(SEED, "MINSK", 40)
    assert sequence(SEED, "MINSK", 40) != sequence(b"another seed", "MINSK", 40)
    assert sequence(SEED, "MINSK", 40) != sequence(SEED, "GOMEL", 40)


@pytest.mark.parametrize("index", range(50))
def test_every_block_is_balanced_1_to_1(index):
    arms = block(SEED, "MINSK", index)
    assert len(arms) in (2, 4)
    assert Counter(arms)["treg_plus_standard"] == Counter(arms)["standard"]


def test_both_block_sizes_occur_and_the_arms_are_balanced_at_every_block_end():
    sizes = {len(block(SEED, "MINSK", i)) for i in range(100)}
    assert sizes == {2, 4}
    seq, n = [], 0
    for i in range(100):
        seq += block(SEED, "MINSK", i)
        assert Counter(seq)["treg_plus_standard"] == len(seq) // 2


def test_slots_are_used_once_in_order_and_the_seed_is_committed():
    allocation = AllocationSequence.start("MINSK", SEED, SYSTEM)
    expected = sequence(SEED, "MINSK", 5)
    got = [allocation.use_next(SEED, str(uuid.uuid4()), SYSTEM) for _ in range(5)]
    assert got == list(zip(range(1, 6), expected))
    # the recorded start event holds only a commitment to the seed, never the seed or the sequence
    started = allocation.pending_events[0]
    assert SEED.hex() not in repr(vars(started)) and "treg" not in repr(vars(started))


def test_a_changed_seed_is_refused_rather_than_silently_changing_the_sequence():
    allocation = AllocationSequence.start("MINSK", SEED, SYSTEM)
    with pytest.raises(Conflict, match="seed"):
        allocation.use_next(b"replaced seed", "p1", SYSTEM)
