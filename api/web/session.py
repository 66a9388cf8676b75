"""The browser session: a thin wrapper around the API's own login and token check (api/routers/auth.py,
api/deps.py), so that whatever those become (lifetimes, revocation, second factors) the pages follow.

The session cookie holds exactly the bearer token ``POST /auth/token`` issues, HttpOnly, SameSite=Strict
and Secure when the page is served over HTTPS; each request validates it through ``deps.current_actor``.
Every form carries a CSRF token: a random value also kept in an HttpOnly, SameSite=Strict cookie
(double submit), renewed at sign-in and sign-out; a POST whose field does not match is refused (403).
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request, Response
from fastapi.security import HTTPAuthorizationCredentials, OAuth2PasswordRequestForm

from api import deps
from api.routers import auth
from domain.audit import Actor
from domain.errors import AuthenticationFailed

SESSION_COOKIE = "trialaudit_session"
CSRF_COOKIE = "trialaudit_csrf"
CSRF_FIELD = "csrf_token"


class LoginRequired(Exception):
    """No session ("required"), or one that ended ("ended"): the page sends the browser to the sign-in
    form, which says which in its own words (nothing from the URL is shown as text)."""


class CsrfRefused(Exception):
    """A form arrived without the CSRF token of this browser."""


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict", secure=secure(request), path="/")


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=secure(request))


async def web_actor(request: Request) -> Actor:
    """The signed-in user, checked by the API's own dependency on the cookie's bearer token."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired("required")
    try:
        actor = await deps.current_actor(request, HTTPAuthorizationCredentials(scheme="Bearer", credentials=token))
    except AuthenticationFailed as e:
        raise LoginRequired("ended") from None
    request.state.actor = actor
    return actor


async def sign_in(request: Request, username: str, password: str) -> str:
    """The API's login (audited, counted towards the lockout): the bearer token for the cookie."""
    form = OAuth2PasswordRequestForm(username=username, password=password)
    answer = await auth.token(request, form, request.app.state.services)
    return answer["access_token"]


def csrf_token(request: Request) -> str:
    """This browser's CSRF token (made on first use; ``remember_csrf`` puts it in the cookie)."""
    token = getattr(request.state, "csrf", None) or request.cookies.get(CSRF_COOKIE)
    if not token:
        token = secrets.token_urlsafe(32)
    request.state.csrf = token
    return token


def new_csrf(request: Request) -> str:
    request.state.csrf = secrets.token_urlsafe(32)
    return request.state.csrf


def remember_csrf(request: Request, response: Response) -> None:
    token = getattr(request.state, "csrf", None)
    if token and token != request.cookies.get(CSRF_COOKIE):
        set_cookie(response, request, CSRF_COOKIE, token)


async def check_csrf(request: Request) -> dict[str, str]:
    """The form's fields, once its CSRF token matched this browser's cookie."""
    form = await request.form()
    sent = str(form.get(CSRF_FIELD) or "")
    kept = request.cookies.get(CSRF_COOKIE) or ""
    if not sent or not kept or not hmac.compare_digest(sent.encode(), kept.encode()):
        raise CsrfRefused("this form's CSRF token is missing or does not match: reload the page and send it again")
    return {k: str(v) for k, v in form.items() if isinstance(v, str)}
