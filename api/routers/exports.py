"""CDISC ODM 1.3.2 exports (R16): Transactional, Archival, one transaction per event, streamed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.deps import ActorDep, AsOfDep, ServicesDep
from api.schemas import PROBLEMS
from application.exports import OdmExports

router = APIRouter(tags=["exports"], responses={k: PROBLEMS[k] for k in (401, 403, 404, 422)})


@router.get("/exports/odm", response_class=StreamingResponse,
            responses={200: {"content": {"application/xml": {}}}})
def export_odm(
    actor: ActorDep, svc: ServicesDep, as_of: AsOfDep,
    participant: Annotated[str | None, Query(description="One participant's id; without it, the whole study")] = None,
):
    """ODM 1.3.2 `FileType="Transactional"` `Archival="Yes"`: every event one transaction with its AuditRecord;
    `SourceID` = `evt:<notification id>:leaf:<Merkle leaf index>`. The export is recorded on the audit trail."""
    exports = OdmExports(svc.app, svc.integrity.log)
    if participant is not None:
        body = exports.participant(actor, participant, as_of=as_of)
        name = f"odm-{participant}.xml"
    else:
        body = exports.study(actor)
        name = "odm-study.xml"
    return StreamingResponse(body, media_type="application/xml",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})
