"""Reading a request body with a size limit enforced while reading, not after."""

from __future__ import annotations

from fastapi import Request

from api.problems import ProblemError


def _too_large(limit: int) -> ProblemError:
    return ProblemError(413, f"request body is larger than the limit of {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
