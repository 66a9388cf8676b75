from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import ActorDep, ServicesDep
from api.schemas import PROBLEMS, Token, UserOut

router = APIRouter(tags=["auth"])


@router.post("/auth/token", response_model=Token, responses={401: PROBLEMS[401], 422: PROBLEMS[422]})
async def token(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], svc: ServicesDep):
    """OAuth2 password flow. Every login and failed login is audited; 5 failures lock the account."""
    client = request.client.host if request.client else "unknown"
    user = await run_in_threadpool(svc.app.authenticate, form.username, form.password, client=client)
    return {"access_token": svc.tokens.issue(str(user.id)), "token_type": "bearer", "expires_in": svc.tokens.ttl_seconds}


@router.get("/me", response_model=UserOut, responses={401: PROBLEMS[401]})
def me(actor: ActorDep, svc: ServicesDep):
    return svc.app.get_user(actor, actor.user_id)
