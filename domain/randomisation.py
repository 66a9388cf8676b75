"""Concealed, reproducible 1:1 allocation by permuted blocks.

The sequence is a pure function of a secret seed, the stratum (site) and the slot number, so the
statistician can regenerate it for verification, while nobody can read a slot before it is used:
the seed never enters the event store, and only the arm of a used slot is recorded.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

from domain.audit import AuditedAggregate, AuditedCreated, change
from domain.errors import Conflict
from domain.trial import ARMS, TRIAL_ID, trial_uuid

RULE = "permuted blocks 1:1, block sizes 2 and 4, HMAC-SHA256 DRBG v1"
BLOCK_SIZES = (2, 4)


def _stream(seed: bytes, label: str) -> Iterator[int]:
    counter = 0
    while True:
        block = hmac.new(seed, f"{label}|{counter}".encode(), hashlib.sha256).digest()
        for i in range(0, len(block), 4):
            yield int.from_bytes(block[i : i + 4], "big")
        counter += 1


def _below(stream: Iterator[int], n: int) -> int:
    """Uniform integer in [0, n) by rejection sampling (no modulo bias)."""
    limit = (2**32 // n) * n
    while True:
        value = next(stream)
        if value < limit:
            return value % n


def block(seed: bytes, stratum: str, index: int) -> list[str]:
    """The arms of block ``index`` of the stratum, in allocation order."""
    stream = _stream(seed, f"{TRIAL_ID}|{stratum}|block|{index}")
    size = BLOCK_SIZES[_below(stream, len(BLOCK_SIZES))]
    arms = [ARMS[i % 2] for i in range(size)]
    for i in range(size - 1, 0, -1):  # Fisher-Yates
        j = _below(stream, i + 1)
        arms[i], arms[j] = arms[j], arms[i]
    return arms


def sequence(seed: bytes, stratum: str, length: int) -> list[str]:
    arms: list[str] = []
    index = 0
    while len(arms) < length:
        arms.extend(block(seed, stratum, index))
        index += 1
    return arms[:length]


def arm_for_slot(seed: bytes, stratum: str, slot: int) -> str:
    """The arm of slot ``slot`` (1-based)."""
    if slot < 1:
        raise ValueError("slots start at 1")
    return sequence(seed, stratum, slot)[slot - 1]


def seed_commitment(seed: bytes, stratum: str) -> str:
    """A public commitment to the seed, recorded when the sequence starts."""
    return hashlib.sha256(b"trialaudit-allocation-commitment|" + stratum.encode() + b"|" + seed).hexdigest()


class AllocationSequence(AuditedAggregate):
    """The used slots of one stratum's allocation sequence; each slot is used exactly once."""

    TOPIC = "trialaudit.AllocationSequence"

    @staticmethod
    def id_for(stratum: str):
        return trial_uuid("allocation", stratum)

    class AllocationSequenceStarted(AuditedCreated):
        TOPIC = "trialaudit.AllocationSequence.AllocationSequenceStarted"
        stratum: str
        rule: str
        commitment: str

    class AllocationUsed(AuditedAggregate.Event):
        TOPIC = "trialaudit.AllocationSequence.AllocationUsed"
        slot: int
        participant_id: str
        arm: str

        def apply(self, aggregate: Any) -> None:
            aggregate.used[self.slot] = self.participant_id

    def __init__(self, stratum: str, rule: str, commitment: str):
        self.stratum = stratum
        self.rule = rule
        self.commitment = commitment
        self.used: dict[int, str] = {}

    @classmethod
    def start(cls, stratum: str, seed: bytes, stamp: dict) -> "AllocationSequence":
        commitment = seed_commitment(seed, stratum)
        return cls._create(
            cls.AllocationSequenceStarted,
            id=cls.id_for(stratum),
            stratum=stratum,
            rule=RULE,
            commitment=commitment,
            audit=stamp,
            changes=[change("commitment", None, commitment)],
        )

    @property
    def next_slot(self) -> int:
        return len(self.used) + 1

    def use_next(self, seed: bytes, participant_id: str, stamp: dict) -> tuple[int, str]:
        if seed_commitment(seed, self.stratum) != self.commitment:
            raise Conflict(
                "the allocation seed does not match the sequence started for this site; "
                "restore the original TRIALAUDIT_ALLOCATION_SEED before randomising"
            )
        if participant_id in self.used.values():
            raise Conflict("this participant already used an allocation slot")
        slot = self.next_slot
        arm = arm_for_slot(seed, self.stratum, slot)
        self.trigger_event(
            self.AllocationUsed,
            audit=stamp,
            changes=[change(f"slot.{slot}", None, participant_id)],
            slot=slot,
            participant_id=participant_id,
            arm=arm,
        )
        return slot, arm
