"""``patchbay login`` / ``logout`` / ``api``: act on a remote gateway over its REST API with a token.

``login`` stores the gateway URL and a personal access token in a file only the user
can read (``$PATCHBAY_CONFIG_DIR/credentials.json``, default ``~/.config/patchbay``).
With ``--email`` it logs in with a password and mints a token named after this host.
``api`` sends one request with the stored token and prints the JSON answer.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from patchbay.auth.sessions import SESSION_COOKIE
from patchbay.cli.output import emit_json
from patchbay.errors import InvalidInput, PatchbayError, Unauthenticated

TIMEOUT = 30.0
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def credentials_path() -> Path:
    """Where ``login`` keeps the URL and token."""
    base = os.environ.get("PATCHBAY_CONFIG_DIR") or Path.home() / ".config" / "patchbay"
    return Path(base) / "credentials.json"


def _read_stdin_secret(what: str) -> str:
    value = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not value:
        raise InvalidInput(f"{what} expected on standard input, got nothing")
    return value


def _error_of(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{body['error']['message']} ({response.status_code} {body['error']['code']})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


def _request(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise PatchbayError(f"cannot reach {url}: {type(exc).__name__}") from exc


def _base(url: str) -> str:
    clean = url.strip().rstrip("/")
    if not clean.startswith(("http://", "https://")):
        raise InvalidInput(f"{url!r} is not an http(s) URL")
    return clean


def login(
    url: Annotated[str, typer.Argument(help="The gateway's base URL, e.g. https://patchbay.example.com")],
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="Read a personal access token from stdin.")
    ] = False,
    email: Annotated[str | None, typer.Option("--email", help="Log in with email; password from stdin.")] = None,
) -> None:
    """Remember a gateway and a token for ``patchbay api`` (verifies them first)."""
    base = _base(url)
    if token_stdin == (email is not None):
        raise InvalidInput("give exactly one of --token-stdin or --email")
    with httpx.Client(timeout=TIMEOUT) as client:
        if email is not None:
            token = _mint_token(client, base, email, _read_stdin_secret("a password"))
        else:
            token = _read_stdin_secret("a token")
        me = _request(client, "GET", f"{base}/api/v1/me", headers={"authorization": f"Bearer {token}"})
        if me.status_code != 200:
            raise Unauthenticated(f"the gateway refused the token: {_error_of(me)}")
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600 before anything is written, so the token is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": base, "token": token}, handle)
    typer.echo(f"logged in to {base} as {me.json()['email']}")


def _mint_token(client: httpx.Client, base: str, email: str, password: str) -> str:
    answer = _request(client, "POST", f"{base}/api/v1/auth/login", json={"email": email, "password": password})
    if answer.status_code != 200:
        raise Unauthenticated(f"login failed: {_error_of(answer)}")
    # Sent by hand: a cookie jar keeps a Secure cookie off plain-http URLs such as a local gateway's.
    session = {
        "x-csrf-token": answer.json()["csrf_token"],
        "cookie": f"{SESSION_COOKIE}={answer.cookies[SESSION_COOKIE]}",
    }
    client.cookies.clear()
    made = _request(
        client,
        "POST",
        f"{base}/api/v1/me/tokens",
        json={"name": f"patchbay CLI on {platform.node() or 'this host'}"[:200]},
        headers=session,
    )
    if made.status_code != 201:
        raise PatchbayError(f"could not create a token: {_error_of(made)}")
    _request(client, "POST", f"{base}/api/v1/auth/logout", headers=session)
    token: str = made.json()["token"]
    return token


def logout() -> None:
    """Forget the stored gateway and token (revoke the token on the gateway to end it there)."""
    path = credentials_path()
    if not path.exists():
        typer.echo("not logged in")
        return
    path.unlink()
    typer.echo("logged out (the token stays valid until revoked: DELETE /api/v1/me/tokens/{id})")


def _stored() -> tuple[str, str]:
    path = credentials_path()
    try:
        data = json.loads(path.read_text())
        return str(data["url"]), str(data["token"])
    except FileNotFoundError as exc:
        raise InvalidInput("not logged in; run: patchbay login URL --token-stdin") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{path} is damaged; run patchbay login again") from exc


def api(
    method: Annotated[str, typer.Argument(help="GET, POST, PUT, PATCH or DELETE.")],
    path: Annotated[str, typer.Argument(help="Path under /api/v1, e.g. /orgs or /orgs/acme/servers.")],
    body: Annotated[str | None, typer.Option("--json", help="Request body (JSON).")] = None,
) -> None:
    """Call the remote gateway's REST API with the stored token; prints the JSON answer."""
    verb = method.upper()
    if verb not in _METHODS:
        raise InvalidInput(f"method must be one of {', '.join(_METHODS)}")
    payload: Any = None
    if body is not None:
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise InvalidInput(f"--json is not valid JSON: {exc}") from exc
    base, token = _stored()
    target = f"{base}/api/v1/{path.strip().lstrip('/').removeprefix('api/v1/')}"
    with httpx.Client(timeout=TIMEOUT) as client:
        response = _request(client, verb, target, json=payload, headers={"authorization": f"Bearer {token}"})
    if response.status_code >= 400:
        raise PatchbayError(_error_of(response))
    if response.content:
        emit_json(response.json())


def register(app: typer.Typer) -> None:
    """Add ``login``, ``logout`` and ``api`` to the root app."""
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("api")(api)
