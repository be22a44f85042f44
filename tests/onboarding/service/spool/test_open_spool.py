"""``open_spool``: the backend a URL names, and errors that keep its secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from onboarding.service.spool import (
    PostgresSpool,
    SpoolUnavailable,
    SqliteSpool,
    open_spool,
    redact_url,
)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lib/onboarding/spool.sqlite3", Path("/var/lib/onboarding/spool.sqlite3")),
        ("sqlite:relative/spool.sqlite3", Path("relative/spool.sqlite3")),
        ("SQLITE:relative/spool.sqlite3", Path("relative/spool.sqlite3")),
        ("sqlite:///srv/with%20space.sqlite3", Path("/srv/with space.sqlite3")),
        ("/srv/spool.sqlite3", Path("/srv/spool.sqlite3")),
        ("./.onboarding/spool.sqlite3", Path(".onboarding/spool.sqlite3")),
        ("spool.sqlite3", Path("spool.sqlite3")),
    ],
)
def test_sqlite_urls_and_paths(url: str, path: Path) -> None:
    spool = open_spool(url, 1234)
    assert isinstance(spool, SqliteSpool)
    assert (spool.path, spool.max_bytes) == (path, 1234)


@pytest.mark.parametrize(
    "url", ["postgresql://onboarding:s3cret@db.internal:5432/spool", "postgres://db/spool"]
)
def test_postgres_urls(url: str) -> None:
    spool = open_spool(url, 99)
    assert isinstance(spool, PostgresSpool)
    assert spool.max_bytes == 99
    assert "s3cret" not in repr(spool) and "s3cret" not in spool.description


@pytest.mark.parametrize(
    "url",
    [
        "mysql://onboarding:s3cret@db.internal/spool",
        "redis://:s3cret@cache:6379/0",
        "https://db.internal/spool?password=s3cret",
        "mysql://onboarding:s3/cr?et@db.internal/spool",  # unescaped '/' and '?' in it
        "sqlite://onboarding:s3cret@host/spool.sqlite3",  # SQLite names no host
        "sqlite:",
        "",
    ],
)
def test_bad_urls_are_refused_without_their_secrets(url: str) -> None:
    with pytest.raises(ValueError) as raised:
        open_spool(url, 1)
    message = str(raised.value)
    assert "s3cret" not in message and "s3" not in message and "et@" not in message
    if "db.internal" in url:
        assert "db.internal" in message  # it still says which URL it means


def test_open_spool_does_not_open(tmp_path: Path) -> None:
    open_spool(str(tmp_path / "not-yet" / "spool.sqlite3"), 1)
    assert not (tmp_path / "not-yet").exists()


def test_redact_url() -> None:
    assert redact_url("postgresql://u:pw@h:5432/db?sslpassword=x#f") == "postgresql://h:5432/db"
    assert redact_url("sqlite:///a/b.sqlite3") == "sqlite:///a/b.sqlite3"


async def test_create_false_is_passed_to_sqlite_and_ignored_by_postgres(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "spool.sqlite3"
    tool = open_spool(f"sqlite://{path}", 1, create=False)
    assert isinstance(tool, SqliteSpool) and tool.create is False
    with pytest.raises(SpoolUnavailable, match="does not exist"):
        await tool.open()
    assert not path.parent.exists()

    default = open_spool(str(path), 1)
    assert isinstance(default, SqliteSpool) and default.create is True
    assert isinstance(open_spool("postgresql://db/spool", 1, create=False), PostgresSpool)
