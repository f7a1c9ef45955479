"""Users: hashed passwords, sign-in, duplicates and bad input; the `giftrec users` commands."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from api.cli import cli
from domain.access.users import authenticate, create_user, list_users
from domain.errors import Conflict, InvalidInput
from domain.models import User

PASSWORD = "correct horse battery"


def test_create_user_stores_a_hash_not_the_password(session: Session) -> None:
    user = create_user(session, " Ann.Keeper@Example.COM ", "Ann Keeper", PASSWORD)
    session.commit()

    stored = session.scalars(select(User)).one()
    assert stored.id == user.id
    assert stored.email == "ann.keeper@example.com"
    assert stored.role == "manager"
    assert stored.is_active and not stored.is_generated
    assert PASSWORD not in stored.password_hash
    assert stored.password_hash.startswith(("scrypt:", "pbkdf2:"))
    assert check_password_hash(stored.password_hash, PASSWORD)


def test_two_users_with_one_password_get_different_hashes(session: Session) -> None:
    a = create_user(session, "a@example.com", "A", PASSWORD)
    b = create_user(session, "b@example.com", "B", PASSWORD, "viewer")
    assert a.password_hash != b.password_hash


def test_authenticate_accepts_only_the_right_password_of_an_active_user(session: Session) -> None:
    user = create_user(session, "boss@example.org", "Boss", PASSWORD, "admin")
    session.commit()

    assert authenticate(session, "boss@example.org", PASSWORD) is user
    assert authenticate(session, "BOSS@example.org ", PASSWORD) is user
    assert authenticate(session, "boss@example.org", PASSWORD + "!") is None
    assert authenticate(session, "boss@example.org", "") is None
    assert authenticate(session, "nobody@example.org", PASSWORD) is None

    user.is_active = False
    session.flush()
    assert authenticate(session, "boss@example.org", PASSWORD) is None


def test_duplicate_email_is_a_conflict_and_keeps_the_first_user(session: Session) -> None:
    create_user(session, "dup@example.com", "First", PASSWORD)
    session.commit()

    with pytest.raises(Conflict, match="dup@example.com"):
        create_user(session, "DUP@example.com", "Second", "another password")

    # The session is still usable and holds exactly the first user.
    assert session.scalar(select(func.count()).select_from(User)) == 1
    assert [u.name for u in list_users(session)] == ["First"]


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("email", {"email": "not-an-email"}),
        ("email", {"email": "two@@example.com"}),
        ("email", {"email": "space in@example.com"}),
        ("email", {"email": "no-dot@localhost"}),
        ("name", {"name": "   "}),
        ("name", {"name": "x" * 201}),
        ("role", {"role": "owner"}),
        ("password", {"password": "short"}),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(session: Session, field: str, kwargs: dict) -> None:
    args = {"email": "ok@example.com", "name": "OK", "password": PASSWORD, "role": "manager", **kwargs}
    with pytest.raises(InvalidInput) as caught:
        create_user(session, **args)
    assert caught.value.field == field
    assert session.scalar(select(func.count()).select_from(User)) == 0


def test_cli_users_create_then_list(runner, sessions) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(
        cli, args=["users", "create", "Mia@Example.com", "--name", "Mia Manager", "--password", PASSWORD]
    )
    assert result.exit_code == 0, result.output
    assert "mia@example.com (manager)" in result.output
    assert PASSWORD not in result.output

    result = runner.invoke(
        cli,
        args=["users", "create", "vic@example.com", "--name", "Vic", "--role", "viewer"],
        env={"GIFTREC_USER_PASSWORD": "from the environment"},
    )
    assert result.exit_code == 0, result.output

    listed = runner.invoke(cli, args=["users", "list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert [line.split()[0] for line in lines] == ["mia@example.com", "vic@example.com"]
    assert "viewer" in lines[1]

    with sessions() as s:
        assert authenticate(s, "vic@example.com", "from the environment") is not None
        assert authenticate(s, "mia@example.com", PASSWORD) is not None


def test_cli_users_create_prompts_for_the_password(runner, sessions) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(
        cli, args=["users", "create", "p@example.com", "--name", "P"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    with sessions() as s:
        assert authenticate(s, "p@example.com", PASSWORD) is not None


def test_cli_users_create_reports_duplicates_and_bad_input(runner) -> None:  # type: ignore[no-untyped-def]
    args = ["users", "create", "d@example.com", "--name", "D", "--password", PASSWORD]
    assert runner.invoke(cli, args=args).exit_code == 0

    again = runner.invoke(cli, args=args)
    assert again.exit_code == 1
    assert "already exists" in again.output

    short = runner.invoke(cli, args=["users", "create", "e@example.com", "--name", "E", "--password", "abc"])
    assert short.exit_code == 1
    assert "password: must have at least 8 characters" in short.output

    role = runner.invoke(cli, args=["users", "create", "e@example.com", "--name", "E", "--role", "owner"])
    assert role.exit_code == 2
    assert "owner" in role.output
