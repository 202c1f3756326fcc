"""Every failure under ``/api/v1`` as ``{"error": {"code": ..., "message": ...}}`` with a fitting status."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException

from patchbay.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PatchbayError,
    RateLimited,
    StoreUnavailable,
    TooLarge,
    Unauthenticated,
    UpstreamError,
    UpstreamTimeout,
)

logger = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of decides.
_STATUS: tuple[tuple[type[PatchbayError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (TooLarge, 413),
    (InvalidInput, 422),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (RateLimited, 429),
    (StoreUnavailable, 503),
    (UpstreamTimeout, 504),
    (UpstreamError, 502),
)
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated", 403: "forbidden"}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """The one error shape of the REST API."""

    error: ErrorDetail


def error_doc(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Declared on every router, so the OpenAPI document describes the errors clients really get.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: error_doc("Not signed in, or the token is unknown, expired or revoked"),
    403: error_doc("Signed in, but the role does not allow this (or the CSRF token is missing)"),
    404: error_doc("No such thing in an organization you belong to"),
    409: error_doc("Conflicts with the current state"),
    413: error_doc("A value is over its size limit"),
    422: error_doc("The request is malformed or a value is invalid"),
    429: error_doc("Too many attempts; try again later"),
    503: error_doc("The database or shared store is unavailable"),
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error response; the only place the envelope is built."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def status_of(exc: PatchbayError) -> int:
    """The HTTP status for one of our errors (500 for a kind the edge does not know)."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


async def _patchbay_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PatchbayError)
    status = status_of(exc)
    if status == 500:
        logger.error("unmapped error %s: %s", type(exc).__name__, exc)
        return error_response(500, "internal", "internal error")
    return error_response(status, exc.code, str(exc) or exc.code, error_headers(exc, status))


def error_headers(exc: PatchbayError, status: int) -> dict[str, str] | None:
    """What an error response carries besides its body: how to authenticate, when to retry."""
    if isinstance(exc, RateLimited):
        return {"retry-after": str(max(1, math.ceil(exc.retry_after)))}
    return {"www-authenticate": "Bearer"} if status == 401 else None


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors()[:5]:
        where = ".".join(str(part) for part in err.get("loc", ()) if part != "body") or "request"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response(422, "invalid_input", "; ".join(problems) or "invalid request")


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code
    return error_response(exc.status_code, code, message, dict(exc.headers or {}))


async def _integrity_error(_request: Request, _exc: Exception) -> JSONResponse:
    return error_response(409, "conflict", "the change conflicts with a concurrent one (it may already exist)")


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error in the REST API", exc_info=exc)
    return error_response(500, "internal", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception the API can raise to the JSON error envelope."""
    app.add_exception_handler(PatchbayError, _patchbay_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(Exception, _unexpected)
