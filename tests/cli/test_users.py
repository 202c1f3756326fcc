from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.security.passwords import verify_password
from patchbay.settings import Settings
from patchbay.store.models import User
from tests.cli.conftest import Cli, in_db, one_error_line


def test_user_create_reads_the_password_from_stdin(cli: Cli, settings: Settings) -> None:
    result = cli("user", "create", "Alice@Example.com", "--password-stdin", "--admin", "--json", input="s3cret pass\n")
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["email"] == "alice@example.com"
    assert created["admin"] is True
    assert "s3cret" not in result.output

    async def stored(session: AsyncSession) -> str | None:
        return await session.scalar(select(User.password_hash).where(User.email == "alice@example.com"))

    encoded = in_db(settings, stored)
    assert encoded is not None and verify_password("s3cret pass", encoded)


def test_duplicate_user_and_empty_password_fail_clearly(cli: Cli) -> None:
    assert cli("user", "create", "bob@example.com").exit_code == 0
    again = cli("user", "create", "BOB@example.com")
    assert again.exit_code == 1
    assert one_error_line(again) == "error: user bob@example.com already exists"
    empty = cli("user", "create", "carol@example.com", "--password-stdin", input="")
    assert empty.exit_code == 1
    assert "standard input is empty" in one_error_line(empty)
    bad = cli("user", "create", "not-an-email")
    assert bad.exit_code == 1
    assert one_error_line(bad) == "error: 'not-an-email' is not a valid email address"
