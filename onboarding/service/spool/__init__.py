"""The durable spool: where verified events wait while Temporal cannot take them, and the
dead-letter. :func:`open_spool` picks the backend from a URL (see ``base`` for the contract)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from onboarding.service.spool.base import (
    DeadLetter,
    Spool,
    SpooledEvent,
    SpoolError,
    SpoolFull,
    SpoolStats,
    SpoolUnavailable,
)
from onboarding.service.spool.postgres import PostgresSpool, redact_url
from onboarding.service.spool.sqlite import SqliteSpool

__all__ = [
    "DeadLetter",
    "PostgresSpool",
    "Spool",
    "SpoolError",
    "SpoolFull",
    "SpoolStats",
    "SpoolUnavailable",
    "SpooledEvent",
    "SqliteSpool",
    "open_spool",
    "redact_url",
]

# Two letters at least, so a Windows drive (``C:``) is a path, not a scheme.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


def open_spool(url: str, max_bytes: int, *, create: bool = True) -> Spool:
    """The spool ``url`` names, not yet opened (await ``.open()``):

    - ``postgresql://…`` or ``postgres://…``: PostgreSQL, shared by several API replicas;
    - ``sqlite:///abs/path.sqlite3``, ``sqlite:relative/path`` or a plain path: one SQLite
      file (its parent directories are created by ``open``).

    ``create=False`` (for operator tools) makes a SQLite spool's ``open`` fail instead of
    creating the file (see :class:`SqliteSpool`); PostgreSQL ignores it.

    Anything else is a :class:`ValueError` whose message never shows the URL's credentials."""
    match = _SCHEME.match(url)
    if match is None:
        if not url.strip():
            raise ValueError("the spool URL is empty")
        return SqliteSpool(Path(url), max_bytes, create=create)
    scheme = match.group(1).lower()
    if scheme in ("postgresql", "postgres"):
        return PostgresSpool(url, max_bytes)
    if scheme == "sqlite":
        rest = url[match.end() :]
        if rest.startswith("//"):  # sqlite:///abs/path: an empty authority, then the path
            authority, _, path = rest[2:].partition("/")
            if authority:
                raise ValueError(
                    f"a SQLite spool URL names no host: {redact_url(url)} "
                    "(use sqlite:///absolute/path or sqlite:relative/path)"
                )
            rest = "/" + path
        path = unquote(rest.split("?", 1)[0])
        if path in ("", "/"):
            raise ValueError(f"the SQLite spool URL {redact_url(url)} names no file")
        return SqliteSpool(Path(path), max_bytes, create=create)
    raise ValueError(
        f"unsupported spool URL scheme {scheme!r} in {redact_url(url)}: use postgresql://…, "
        "sqlite:///absolute/path, sqlite:relative/path or a file path"
    )
