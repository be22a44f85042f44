"""``POST /codec/encode`` and ``POST /codec/decode``: the remote codec protocol Temporal's web UI
and the ``temporal`` CLI speak (``--codec-endpoint``), so operators read the encrypted payloads
of an onboarding's history (docs/encryption.md).

Both take and answer ``{"payloads": [{"metadata": {"encoding": "<base64>", …}, "data":
"<base64>"}]}`` (the protobuf JSON form of ``temporal.api.common.v1.Payloads``). The
``X-Namespace`` header is accepted and not needed: one set of keys serves every namespace.
Authentication is the operator's: ``Authorization: Bearer <ONBOARDING_ADMIN_TOKEN>`` (the
``temporal`` CLI's ``--codec-auth``), the same dependency as every admin route. Browsers (the web
UI) may call them from the origins in ``ONBOARDING_CODEC_CORS_ORIGINS``, credentials included;
a CORS preflight is answered without authentication, and only for those origins.

A browser cannot add the admin token to the web UI's requests, so the same two endpoints are
also served under ``/console/codec``, where the console's session cookie (path ``/console``,
``SameSite=Strict``, sent by the UI's "include cross-origin credentials" when the UI and the API
are on the same host) admits as well as the bearer token. Both are free of side effects: a page
that makes a browser send one learns nothing unless CORS lets it read the answer.

They are left out of the OpenAPI schema: the protocol is Temporal's, documented there and in
docs/encryption.md."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable, Iterable
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.api.common.v1 import Payload

from api.console.web import current_session
from api.deps import AdminDep, SettingsDep, require_admin
from api.problems import ProblemError
from onboarding.service.codec import EncryptionCodec, EncryptionError, codec_from_settings
from onboarding.service.settings import Settings

PREFIX = "/codec"
CONSOLE_PREFIX = "/console/codec"  # the same, admitting the console's session cookie too
# A decode request carries the payloads of one history event (or a few): Temporal's own limit
# for one payload is 2 MiB, so allow a little more than a couple of them.
MAX_BYTES = 8 * 1024 * 1024
MAX_PAYLOADS = 1000
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]*={0,2}")

logger = logging.getLogger("onboarding.api.codec")

router = APIRouter(prefix=PREFIX, tags=["codec"], dependencies=[AdminDep])

_bearer = HTTPBearer(auto_error=False, description="ONBOARDING_ADMIN_TOKEN")


async def require_operator(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """A console session (its cookie) or the admin token."""
    if current_session(request) is None:
        await require_admin(settings, credentials)


console_router = APIRouter(
    prefix=CONSOLE_PREFIX, tags=["codec"], dependencies=[Depends(require_operator)]
)


def is_codec_path(path: str) -> bool:
    return path.startswith((PREFIX + "/", CONSOLE_PREFIX + "/"))


class CodecPayload(BaseModel):
    """One ``temporal.api.common.v1.Payload`` in protobuf JSON: bytes as base64."""

    metadata: dict[str, str] = Field(default_factory=dict, max_length=64)
    data: str = ""


class CodecPayloads(BaseModel):
    payloads: list[CodecPayload] = Field(default_factory=list, max_length=MAX_PAYLOADS)


def _unb64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    # protobuf JSON readers also take the URL-safe alphabet, padding optional
    if _URL_SAFE.fullmatch(text):
        try:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            pass
    raise ProblemError(400, f"{where} is not base64")


def to_payloads(body: CodecPayloads) -> list[Payload]:
    payloads = []
    for index, item in enumerate(body.payloads):
        metadata = {
            name: _unb64(value, f"payloads[{index}].metadata.{name}")
            for name, value in item.metadata.items()
        }
        payloads.append(Payload(metadata=metadata, data=_unb64(item.data, f"payloads[{index}]")))
    return payloads


def from_payloads(payloads: Iterable[Payload]) -> CodecPayloads:
    return CodecPayloads(
        payloads=[
            CodecPayload(
                metadata={k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                data=base64.b64encode(p.data).decode(),
            )
            for p in payloads
        ]
    )


def _codec(request: Request, settings: Settings) -> EncryptionCodec:
    """The app's codec, built once from its settings; without keys, one that passes
    unencrypted payloads through and names the key of an encrypted one it cannot read."""
    codec: EncryptionCodec | None = getattr(request.app.state, "codec", None)
    if codec is None:
        codec = codec_from_settings(settings) or EncryptionCodec([], encrypt=False)
        request.app.state.codec = codec
    return codec


def _apply(
    transform: Callable[[Iterable[Payload]], list[Payload]], body: CodecPayloads
) -> CodecPayloads:
    try:
        return from_payloads(transform(to_payloads(body)))
    except EncryptionError as err:  # names the key id, never a key
        raise ProblemError(422, str(err)) from None
    except ValueError:  # a decrypted payload that is not a Payload: not ours
        raise ProblemError(422, "a payload decrypted to something that is not a payload") from None


@router.post("/encode", response_model=CodecPayloads, include_in_schema=False)
@console_router.post("/encode", response_model=CodecPayloads, include_in_schema=False)
async def encode(
    body: CodecPayloads,
    request: Request,
    settings: SettingsDep,
    x_namespace: str | None = Header(default=None, max_length=256),
) -> CodecPayloads:
    """Encrypt the payloads as the service would (with the newest key; as they are with
    ``ONBOARDING_ENCRYPTION=off``)."""
    return _apply(_codec(request, settings).encode_sync, body)


@router.post("/decode", response_model=CodecPayloads, include_in_schema=False)
@console_router.post("/decode", response_model=CodecPayloads, include_in_schema=False)
async def decode(
    body: CodecPayloads,
    request: Request,
    settings: SettingsDep,
    x_namespace: str | None = Header(default=None, max_length=256),
) -> CodecPayloads:
    """Decrypt the payloads (each with the key its metadata names); unencrypted ones come back
    as they are."""
    return _apply(_codec(request, settings).decode_sync, body)


# --- CORS for the web UI -------------------------------------------------------------------


class _DropOtherCors:
    """Removes ``Access-Control-*`` headers another CORS middleware inside (the callbacks')
    may have added to a codec response, so only the codec's origins ever read one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name in [n for n in headers if n.lower().startswith("access-control-")]:
                    del headers[name]
            await send(message)

        await self.app(scope, receive, sending)


class CodecCors:
    """CORS for ``/codec/*`` and ``/console/codec/*`` alone, with credentials (the web UI's
    "include cross-origin credentials"), from ``ONBOARDING_CODEC_CORS_ORIGINS``; every other
    path goes on untouched. Added after the app's own CORS middleware, so it answers the
    codec's preflights itself."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            _DropOtherCors(app),
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type", "X-Namespace"],
            allow_credentials=True,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_codec_path(scope["path"]):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def install(app: FastAPI, settings: Settings) -> None:
    """The routes, and CORS for them when origins are configured."""
    app.include_router(router)
    app.include_router(console_router)
    if settings.codec_cors_origins:
        app.add_middleware(CodecCors, origins=settings.codec_cors_origins)
