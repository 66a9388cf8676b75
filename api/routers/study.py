"""The study's data dictionary (issue 14.9): forms, items and the visit schedule, for any signed-in role."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import ActorDep, ServicesDep
from api.responses import json_response
from api.schemas import PROBLEMS
from application.study_metadata import metadata_document, study_metadata

router = APIRouter(tags=["study"], responses={k: PROBLEMS[k] for k in (401,)})


@router.get("/study/metadata", response_model=dict[str, Any])
def metadata(actor: ActorDep, svc: ServicesDep):
    """Every form and item code a visit accepts, with label, data type, allowed values or range, unit and
    whether it is required; the other forms' fields; and the visit schedule per arm (codes, target days,
    windows). Built from the definitions the API validates items against."""
    return json_response(study_metadata(svc.app.manufacturing_days))


@router.get("/study/metadata.xml", response_class=Response,
            responses={200: {"content": {"application/xml": {}}}})
def metadata_xml(actor: ActorDep, svc: ServicesDep):
    """The same as the MetaDataVersion of a CDISC ODM 1.3.2 document (FileType="Snapshot")."""
    return Response(metadata_document(manufacturing_days=svc.app.manufacturing_days), media_type="application/xml")
