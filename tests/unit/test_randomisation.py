"""The concealed, reproducible permuted-block allocation."""

import uuid
from collections import Counter

import pytest

from domain.audit import Actor, make_stamp
from domain.errors import Conflict
from domain.randomisation import RULE, RULE_V1, RULE_V2, AllocationSequence, block, block_ends, sequence
from domain.trial import ARMS

SEED = bytes(range(32))
SYSTEM = make_stamp(Actor("system", "system", "system", "system", "*"))


def test_the_sequence_is_reproducible_from_the_seed():
    assert sequence(SEED, "MINSK", 40) == sequence(SEED, "MINSK", 40)
    assert sequence(SEED, "MINSK", 40) != sequence(b"another seed", "MINSK", 40)
    assert sequence(SEED, "MINSK", 40) != sequence(SEED, "GOMEL", 40)


@pytest.mark.parametrize("rule, sizes", [(RULE_V1, (2, 4)), (RULE_V2, (4, 6, 8))])
@pytest.mark.parametrize("index", range(50))
def test_every_block_is_balanced_1_to_1(index, rule, sizes):
    arms = block(SEED, "MINSK", index, rule)
    assert len(arms) in sizes
    assert Counter(arms)["treg_plus_standard"] == Counter(arms)["standard"]


@pytest.mark.parametrize("rule, sizes", [(RULE_V1, {2, 4}), (RULE_V2, {4, 6, 8})])
def test_every_block_size_occurs_and_the_arms_are_balanced_at_every_block_end(rule, sizes):
    assert {len(block(SEED, "MINSK", i, rule)) for i in range(100)} == sizes
    seq = []
    for i in range(100):
        seq += block(SEED, "MINSK", i, rule)
        assert Counter(seq)["treg_plus_standard"] == len(seq) // 2


def test_new_sequences_use_the_larger_random_blocks_E19():
    assert RULE == RULE_V2
    assert AllocationSequence.start("MINSK", SEED, SYSTEM).rule == RULE_V2


def test_the_v1_rule_still_gives_the_arms_that_earlier_code_assigned():
    # sequence(SEED, "MINSK", 16) as the code before rule versions computed it (blocks of 2 and 4)
    before = [0, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 1, 0]
    assert sequence(SEED, "MINSK", 16, RULE_V1) == [ARMS[i] for i in before]


def test_a_v1_sequence_finishes_its_block_then_moves_to_v2_E19():
    """A store written before v2: its sequence keeps v1 up to the end of the block in progress (the
    arms already given stay valid and the block stays balanced), then follows v2, and says so."""
    allocation = AllocationSequence.start("MINSK", SEED, SYSTEM, rule=RULE_V1)
    first_end = min(block_ends(SEED, "MINSK", 1, RULE_V1))
    old = sequence(SEED, "MINSK", first_end + 1, RULE_V1)  # one into block 2, as the code before v2 gave them
    for slot, arm in enumerate(old, 1):
        allocation.trigger_event(AllocationSequence.AllocationUsed, audit=SYSTEM, changes=[], slot=slot,
                                 participant_id=f"old{slot}", arm=arm)
    second_end = sorted(block_ends(SEED, "MINSK", first_end + 1, RULE_V1))[1]
    rest = [allocation.use_next(SEED, f"new{i}", SYSTEM)[1] for i in range(second_end - first_end - 1 + 10)]
    v1_part, v2_part = rest[: second_end - first_end - 1], rest[second_end - first_end - 1:]
    assert old + v1_part == sequence(SEED, "MINSK", second_end, RULE_V1)
    assert v2_part == sequence(SEED, "MINSK", 10, RULE_V2)
    changed = [e for e in allocation.pending_events if type(e).__name__ == "AllocationRuleChanged"]
    assert [(e.rule, e.from_slot) for e in changed] == [(RULE_V2, second_end + 1)]
    assert allocation.rule == RULE_V2


def test_site_staff_guess_the_next_arm_less_often_under_v2_E19():
    """bench/predictability.py: the best guess from the arms seen, knowing the block sizes."""
    from bench.predictability import predictability

    v1 = predictability(RULE_V1, seeds=300)
    v2 = predictability(RULE_V2, seeds=300)
    assert v1 > 0.70
    assert v2 < 0.69 and v2 < v1 - 0.03


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
