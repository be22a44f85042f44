"""``/codec/encode`` and ``/codec/decode``: the remote codec protocol of Temporal's web UI and
CLI, authenticated with the admin token (or, under ``/console/codec``, the console's session),
with CORS for the UI's origin alone."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload

from api.app import create_app
from onboarding.core.encryption_keys import new_key
from onboarding.service.codec import codec_from_keys
from onboarding.service.settings import Settings
from tests.conftest import ADMIN_TOKEN, ENCRYPTION_KEY

UI = "http://127.0.0.1:8233"
FRONT_END = "https://app.example.com"  # the callbacks' CORS origin: not the codec's
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        data_dir=tmp_path,
        admin_tokens=[SecretStr(ADMIN_TOKEN)],
        encryption_keys=[SecretStr(ENCRYPTION_KEY)],
        codec_cors_origins=[UI],
        cors_origins=[FRONT_END],
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        yield client


async def encrypted(value: object) -> dict[str, object]:
    """A payload as the service writes it, in the protobuf JSON form the UI sends."""
    plain = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())
    (payload,) = await codec_from_keys([ENCRYPTION_KEY]).encode([plain])
    return {
        "metadata": {k: b64(v) for k, v in payload.metadata.items()},
        "data": b64(payload.data),
    }


async def test_decodes_the_web_uis_request(api: httpx.AsyncClient) -> None:
    # as Temporal's UI sends it: the payloads of one event, X-Namespace, JSON
    body = {"payloads": [await encrypted({"externalMetadata": {"applicant": "jane"}})]}
    response = await api.post(
        "/codec/decode",
        content=json.dumps(body),
        headers={**ADMIN, "Content-Type": "application/json", "X-Namespace": "default",
                 "Origin": UI},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    (payload,) = response.json()["payloads"]
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
    assert json.loads(base64.b64decode(payload["data"])) == {
        "externalMetadata": {"applicant": "jane"}
    }
    assert response.headers["access-control-allow-origin"] == UI
    assert response.headers["access-control-allow-credentials"] == "true"


async def test_encode_then_decode_round_trips(api: httpx.AsyncClient) -> None:
    body = {"payloads": [
        {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(b'"a link token"')},
        {"metadata": {"encoding": b64(b"binary/null")}},
    ]}  # fmt: skip
    encoded = await api.post("/codec/encode", json=body, headers=ADMIN)
    assert encoded.status_code == 200, encoded.text
    for payload in encoded.json()["payloads"]:
        assert base64.b64decode(payload["metadata"]["encoding"]) == b"binary/encrypted"
        assert base64.b64decode(payload["metadata"]["encryption-key-id"]) == b"tests-1"
        assert b"a link token" not in base64.b64decode(payload["data"])
    decoded = await api.post("/codec/decode", json=encoded.json(), headers=ADMIN)
    assert decoded.status_code == 200, decoded.text
    assert decoded.json() == {
        "payloads": [
            {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(b'"a link token"')},
            {"metadata": {"encoding": b64(b"binary/null")}, "data": ""},
        ]
    }


async def test_unencrypted_payloads_come_back_as_they_are(api: httpx.AsyncClient) -> None:
    body = {"payloads": [{"metadata": {"encoding": b64(b"json/plain")}, "data": b64(b"1")}]}
    response = await api.post("/codec/decode", json=body, headers=ADMIN)
    assert response.json() == body


@pytest.mark.parametrize("path", ["/codec/decode", "/codec/encode", "/console/codec/decode"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-token"},
                                     {"Authorization": f"Basic {ADMIN_TOKEN}"}])  # fmt: skip
async def test_refused_without_the_admin_token(
    api: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    body = {"payloads": [await encrypted("secret")]}
    response = await api.post(path, json=body, headers={**headers, "Origin": UI})
    assert response.status_code == 401, response.text
    assert "secret" not in response.text


async def test_an_unknown_key_is_named_never_shown(api: httpx.AsyncClient) -> None:
    other = new_key("elsewhere")
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    (foreign,) = await codec_from_keys([other]).encode([payload])
    body = {"payloads": [{"metadata": {k: b64(v) for k, v in foreign.metadata.items()},
                          "data": b64(foreign.data)}]}  # fmt: skip
    response = await api.post("/codec/decode", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert "'elsewhere'" in response.json()["detail"]
    assert ENCRYPTION_KEY.split(":")[1] not in response.text


async def test_malformed_bodies_are_client_errors(api: httpx.AsyncClient) -> None:
    for body in ({"payloads": [{"data": "%%%"}]}, {"payloads": "no"}, {"payloads": [{"data": 1}]}):
        response = await api.post("/codec/decode", json=body, headers=ADMIN)
        assert 400 <= response.status_code < 500, (body, response.text)


async def test_the_uis_preflight_is_answered_without_authentication(
    api: httpx.AsyncClient,
) -> None:
    for path in ("/codec/decode", "/codec/encode", "/console/codec/decode"):
        response = await api.options(
            path,
            headers={
                "Origin": UI,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
            },
        )
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == UI
        assert response.headers["access-control-allow-credentials"] == "true"
        allowed = response.headers["access-control-allow-headers"].lower()
        assert {"content-type", "x-namespace", "authorization"} <= set(allowed.split(", "))


@pytest.mark.parametrize("origin", ["https://evil.example", FRONT_END, "http://127.0.0.1:8234"])
async def test_other_origins_get_no_cors_answer(api: httpx.AsyncClient, origin: str) -> None:
    preflight = await api.options(
        "/codec/decode",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
    )  # fmt: skip
    assert "access-control-allow-origin" not in preflight.headers
    body = {"payloads": [await encrypted("x")]}
    response = await api.post("/codec/decode", json=body, headers={**ADMIN, "Origin": origin})
    assert response.status_code == 200  # served (not a browser), but no browser may read it
    assert "access-control-allow-origin" not in response.headers


async def test_the_callbacks_cors_is_untouched(api: httpx.AsyncClient) -> None:
    """The front end's origin still gets its preflight for the callbacks, the UI's does not."""
    headers = {"Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    front = await api.options(
        "/onboardings/u-1/callbacks", headers={**headers, "Origin": FRONT_END}
    )
    assert front.headers.get("access-control-allow-origin") == FRONT_END
    ui = await api.options("/onboardings/u-1/callbacks", headers={**headers, "Origin": UI})
    assert "access-control-allow-origin" not in ui.headers


async def test_the_console_session_admits_under_console_codec_only(
    api: httpx.AsyncClient,
) -> None:
    """What a browser can send: the console's cookie (path /console), after signing in."""
    signed_in = await api.post(
        "/console/sign-in",
        data={"token": ADMIN_TOKEN, "next": "/console"},
        headers={"Origin": "http://127.0.0.1:8000"},
    )
    assert signed_in.status_code == 303, signed_in.text
    body = {"payloads": [await encrypted({"linkToken": "t"})]}
    console = await api.post("/console/codec/decode", json=body, headers={"Origin": UI})
    assert console.status_code == 200, console.text
    assert console.headers["access-control-allow-origin"] == UI
    bare = await api.post("/codec/decode", json=body)  # the cookie's path is /console
    assert bare.status_code == 401


async def test_large_requests_are_taken(api: httpx.AsyncClient) -> None:
    big = Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"x" * 500_000 + b'"')
    (payload,) = await codec_from_keys([ENCRYPTION_KEY]).encode([big])
    body = {"payloads": [{"metadata": {k: b64(v) for k, v in payload.metadata.items()},
                          "data": b64(payload.data)}]}  # fmt: skip
    response = await api.post("/codec/decode", json=body, headers=ADMIN)
    assert response.status_code == 200
