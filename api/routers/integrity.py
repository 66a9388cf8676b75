"""The integrity log: signed tree heads and RFC 9162 proofs (any authenticated user: hashes only) and
the leaves (the oversight roles of domain/access.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ActorDep, ServicesDep
from api.schemas import PROBLEMS
from application.integrity import IntegrityService
from domain.access import can, require
from domain.errors import NotFound
from pydantic import BaseModel, Field

# Leaf indices and tree sizes are stored as 64-bit integers: larger ones are bad input (422), not a crash.
MAX_INDEX = 2**62

router = APIRouter(prefix="/integrity", tags=["integrity"], responses={k: PROBLEMS[k] for k in (401, 422)})


class TreeHead(BaseModel):
    tree_size: int = Field(description="Number of leaves the head covers")
    root_hash: str = Field(description="RFC 9162 root hash, hex")
    timestamp: str = Field(description="When the head was signed, UTC (ISO 8601, milliseconds)")
    timestamp_ms: int = Field(description="The same instant in milliseconds since the Unix epoch, as signed")
    signature: str = Field(description="Ed25519 signature of the tree-head bytes documented in the README, base64")
    public_key: str = Field(description="Raw Ed25519 public key, base64")
    head_id: int | None = None


class InclusionProof(BaseModel):
    leaf_index: int
    tree_size: int
    leaf_hash: str = Field(description="SHA-256(0x00 || leaf data), hex")
    audit_path: list[str] = Field(description="RFC 9162 §2.1.3 inclusion path, hex, from the leaf upwards")


class ConsistencyProof(BaseModel):
    first: int
    second: int
    proof: list[str] = Field(description="RFC 9162 §2.1.4 consistency path, hex")


class LeafOut(BaseModel):
    leaf_index: int
    leaf_hash: str = Field(description="SHA-256(0x00 || leaf data), hex")
    leaf_data: str = Field(description="Base64 of the exact bytes hashed. Format 1: 0x01, the event's digest, the "
                           "subject commitment, the notification id (73 bytes, no content); format 0 (older "
                           "events): the whole event, given to inspectors only (empty and withheld otherwise)")
    format: int = Field(description="1: the leaf commits to its event without carrying it; 0: the old format")
    withheld: bool = Field(description="True when leaf_data of an old-format leaf is withheld from this role")


def _integrity(svc) -> IntegrityService:
    if svc.integrity is None:  # pragma: no cover - wiring error
        raise NotFound("this store keeps no integrity log")
    return svc.integrity


@router.get("/head", response_model=TreeHead, responses={409: PROBLEMS[409]})
def head(actor: ActorDep, svc: ServicesDep):
    """The latest signed tree head over the whole log (signed now if the log has grown since); 409 when
    the log ends in leaves no signature of ours covers (appended behind the server's back)."""
    return _integrity(svc).head().to_json()


@router.post("/head", response_model=TreeHead, status_code=201, responses={409: PROBLEMS[409]})
def sign_head(actor: ActorDep, svc: ServicesDep):
    """Sign a new tree head over the log as it is now (a checkpoint on demand); 409 as for GET."""
    return _integrity(svc).sign_head().to_json()


@router.get("/proofs/inclusion", response_model=InclusionProof)
def inclusion(
    actor: ActorDep,
    svc: ServicesDep,
    leaf_index: Annotated[int, Query(ge=0, le=MAX_INDEX, description="Leaf index, from 0")],
    tree_size: Annotated[int | None, Query(ge=1, le=MAX_INDEX, description="Tree size of a signed head (default: now)")] = None,
):
    return _integrity(svc).inclusion_proof(leaf_index, tree_size)


@router.get("/proofs/consistency", response_model=ConsistencyProof)
def consistency(
    actor: ActorDep,
    svc: ServicesDep,
    first: Annotated[int, Query(ge=0, le=MAX_INDEX, description="Tree size of the earlier head")],
    second: Annotated[int | None, Query(ge=0, le=MAX_INDEX, description="Tree size of the later head (default: now)")] = None,
):
    return _integrity(svc).consistency_proof(first, second)


@router.get("/leaves", response_model=list[LeafOut], responses={403: PROBLEMS[403]})
def leaves(
    actor: ActorDep,
    svc: ServicesDep,
    start: Annotated[int, Query(ge=0, le=MAX_INDEX)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
):
    """The leaves (the oversight roles: admin, monitor, data manager, inspector). A format-1 leaf
    reveals no content; an old-format leaf's data (its whole event) is given to inspectors only."""
    require(actor, "integrity.leaves")
    return _integrity(svc).leaves(start, limit, old_format_data=can(actor, "integrity.leaf_events"))
