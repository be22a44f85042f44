"""``onboarding listen``: the receiver verifies Standard Webhooks signatures with the
``standardwebhooks`` library, prints what it heard and answers as a customer's backend would.
Notices are signed here with the library itself, as a sender would."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from onboarding.service.settings import Settings, new_notify_secret
from onboarding.tooling.discovery import DevTarget
from onboarding.tooling.listen import (
    ConsolePrinter,
    Heard,
    ListenError,
    create_listener_app,
    describe,
    listen_options,
)
from onboarding.tooling.ports import free_port
from onboarding.tooling.serving import serving
from tests.output_lines import OutputLines

ONBOARDING = Path(sys.executable).parent / "onboarding"
SECRET = new_notify_secret()
OLD_SECRET = new_notify_secret()


def notice(user: str = "standin-1", sequence: int = 3) -> bytes:
    return json.dumps(
        {
            "type": "onboarding.data_ready",
            "timestamp": "2025-01-02T03:04:05Z",
            "data": {
                "userId": user,
                "sequence": sequence,
                "stage": "data_ready",
                "status": "active",
                "reason": None,
                "changes": {"stage": {"from": "connected", "to": "data_ready"}},
            },
        }
    ).encode()


def signed(
    body: bytes, *secrets: str, msg_id: str = "msg_1", at: datetime | None = None
) -> dict[str, str]:
    """Standard Webhooks headers: one ``v1,…`` signature per secret, space separated."""
    at = at or datetime.now(UTC)
    signatures = " ".join(Webhook(s).sign(msg_id, at, body.decode()) for s in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }


class Heards(list[Heard]):
    def outcomes(self) -> list[tuple[str, int]]:
        return [(heard.outcome, heard.status) for heard in self]


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://listen")


async def test_a_signed_notice_is_answered_204_and_printed() -> None:
    heard = Heards()
    async with client_for(create_listener_app([SECRET], heard.append)) as client:
        body = notice()
        response = await client.post("/", content=body, headers=signed(body, SECRET))
    assert response.status_code == 204
    assert response.content == b""
    assert heard.outcomes() == [("notice", 204)]
    assert heard[0].body == json.loads(body)
    line = describe(heard[0])
    for part in ("onboarding.data_ready", "userId=standin-1", "sequence=3", "webhook-id=msg_1"):
        assert part in line
    assert line.endswith("→ 204")


async def test_any_configured_secret_verifies_during_a_rotation() -> None:
    heard = Heards()
    app = create_listener_app([SECRET, OLD_SECRET], heard.append)
    async with client_for(app) as client:
        body = notice()
        by_old = await client.post("/", content=body, headers=signed(body, OLD_SECRET))
        # a sender mid-rotation signs with both; one of them verifies
        both = signed(body, new_notify_secret(), SECRET, msg_id="msg_2")
        by_both = await client.post("/hooks/notices", content=body, headers=both)
    assert (by_old.status_code, by_both.status_code) == (204, 204)
    assert heard.outcomes() == [("notice", 204), ("notice", 204)]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (lambda b: signed(b, new_notify_secret()), "no signature matches"),
        (lambda b: signed(b, SECRET, at=datetime.now(UTC) - timedelta(minutes=6)), "stale"),
        (lambda b: signed(b, SECRET, at=datetime.now(UTC) + timedelta(minutes=6)), "future"),
        (lambda b: {"content-type": "application/json"}, "missing webhook-id"),
        (lambda b: {**signed(b, SECRET), "webhook-signature": "garbage"}, "malformed"),
        (lambda b: {**signed(b, SECRET), "webhook-signature": "v1,a,b"}, "malformed"),
        (lambda b: {**signed(b, SECRET), "webhook-timestamp": "soon"}, "webhook-timestamp"),
    ],
    ids=["wrong-secret", "stale", "future", "unsigned", "no-comma", "two-commas", "bad-time"],
)
async def test_an_unverified_request_is_401_and_its_body_is_not_printed(
    headers: Any, reason: str
) -> None:
    heard = Heards()
    out = io.StringIO()
    printer = ConsolePrinter(out=out)

    def both(h: Heard) -> None:
        heard.append(h)
        printer(h)

    async with client_for(create_listener_app([SECRET], both)) as client:
        body = notice(user="secret-user-in-the-body")
        response = await client.post("/", content=body, headers=headers(body))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert heard.outcomes() == [("rejected", 401)]
    assert heard[0].body is None
    assert reason in (heard[0].reason or "")
    assert "rejected" in out.getvalue() and reason in out.getvalue()
    assert "secret-user-in-the-body" not in out.getvalue() + response.text


async def test_a_duplicate_is_acknowledged_and_printed_as_one() -> None:
    heard = Heards()
    out = io.StringIO()
    printer = ConsolePrinter(out=out)

    def both(h: Heard) -> None:
        heard.append(h)
        printer(h)

    async with client_for(create_listener_app([SECRET], both)) as client:
        body = notice()
        first = await client.post("/", content=body, headers=signed(body, SECRET))
        again = await client.post("/", content=body, headers=signed(body, SECRET))
    assert (first.status_code, again.status_code) == (204, 204)
    assert heard.outcomes() == [("notice", 204), ("duplicate", 204)]
    assert heard[1].delivery == 2
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "notice" in lines[0] and "duplicate" not in lines[0]
    assert "duplicate" in lines[1] and "(delivery 2)" in lines[1]


async def test_answer_makes_every_verified_notice_get_that_status() -> None:
    heard = Heards()
    app = create_listener_app([SECRET], heard.append, answer=503)
    async with client_for(app) as client:
        body = notice()
        first = await client.post("/", content=body, headers=signed(body, SECRET))
        retried = await client.post("/", content=body, headers=signed(body, SECRET))
        forged = await client.post("/", content=body, headers=signed(body, OLD_SECRET))
    assert (first.status_code, retried.status_code, forged.status_code) == (503, 503, 401)
    # never acknowledged, so the second delivery is the sender's retry, not a duplicate
    assert heard.outcomes() == [("notice", 503), ("retry", 503), ("rejected", 401)]

    gone = Heards()
    async with client_for(create_listener_app([SECRET], gone.append, answer=410)) as client:
        refused = await client.post("/", content=body, headers=signed(body, SECRET))
    assert refused.status_code == 410
    assert gone.outcomes() == [("notice", 410)]


async def test_a_signed_body_that_is_not_json_is_400() -> None:
    heard = Heards()
    async with client_for(create_listener_app([SECRET], heard.append)) as client:
        body = b"not json at all"
        response = await client.post("/", content=body, headers=signed(body, SECRET))
        latin = "café".encode("latin-1")  # not UTF-8: the library cannot even verify it
        headers = {**signed(b"cafe", SECRET), "webhook-id": "msg_2"}
        unreadable = await client.post("/", content=latin, headers=headers)
    assert (response.status_code, unreadable.status_code) == (400, 401)
    assert heard.outcomes() == [("invalid", 400), ("rejected", 401)]


async def test_json_lines_put_only_new_notices_on_stdout() -> None:
    out, err = io.StringIO(), io.StringIO()
    printer = ConsolePrinter(json_lines=True, out=out, err=err)
    async with client_for(create_listener_app([SECRET], printer)) as client:
        body = notice()
        await client.post("/", content=body, headers=signed(body, SECRET))
        await client.post("/", content=body, headers=signed(body, SECRET))
        await client.post("/", content=body, headers=signed(body, OLD_SECRET))
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [json.loads(body)]
    assert "duplicate" in err.getvalue() and "rejected" in err.getvalue()


def test_a_bad_secret_or_status_is_refused_before_serving() -> None:
    with pytest.raises(ListenError, match="number 2"):
        create_listener_app([SECRET, "whsec_short"], print)
    with pytest.raises(ListenError, match="200 to 599"):
        create_listener_app([SECRET], print, answer=99)
    with pytest.raises(ListenError, match="no secret"):
        create_listener_app([], print)


async def test_the_listener_answers_through_a_real_socket() -> None:
    heard = Heards()
    port = free_port()
    app = create_listener_app([SECRET], heard.append)
    async with (
        serving(app, "127.0.0.1", port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        body = notice()
        response = await client.post("/", content=body, headers=signed(body, SECRET))
        wrong = await client.get("/")
    assert response.status_code == 204
    assert wrong.status_code == 405
    assert heard.outcomes() == [("notice", 204)]


# --- where the secrets come from ---------------------------------------------------------


def _target(tmp_path: Path, **settings: Any) -> DevTarget:
    return DevTarget(settings=Settings(data_dir=tmp_path, **settings))


def test_secret_flag_wins_then_the_environment(tmp_path: Path) -> None:
    from pydantic import SecretStr

    target = _target(tmp_path, notify_secrets=[SecretStr(OLD_SECRET)])
    assert listen_options(target, [SECRET]).secrets == (SECRET,)
    from_env = listen_options(target, None)
    assert (from_env.secrets, from_env.secrets_from) == ((OLD_SECRET,), "ONBOARDING_NOTIFY_SECRET")


def test_no_secret_at_all_says_to_start_dev_or_pass_one(tmp_path: Path) -> None:
    with pytest.raises(ListenError) as refused:
        listen_options(_target(tmp_path), None)
    assert "onboarding dev" in str(refused.value) and "--secret" in str(refused.value)
    with pytest.raises(ListenError, match="number 1"):
        listen_options(_target(tmp_path), ["whsec_not base64"])


# --- the command ---------------------------------------------------------------------------


@pytest.fixture
def listen_process(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONBOARDING_", "TEMPORAL_"))}
    env["ONBOARDING_DATA_DIR"] = str(tmp_path / "data")
    process = subprocess.Popen(
        [str(ONBOARDING), "listen", "--port", "0", "--secret", SECRET],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_the_command_prints_what_it_hears_and_exits_0_on_ctrl_c(
    listen_process: subprocess.Popen[str], tmp_path: Path
) -> None:
    lines = OutputLines(listen_process.stdout)
    ready = lines.wait_for("ready on ")
    url = ready.split("ready on ", 1)[1].strip()
    assert lines.wait_for("ONBOARDING_NOTIFY_URL=").endswith(f"ONBOARDING_NOTIFY_URL={url}")
    body = notice(user="standin-cli")
    response = httpx.post(url, content=body, headers=signed(body, SECRET, msg_id="msg_cli"))
    assert response.status_code == 204
    line = lines.wait_for("userId=standin-cli")
    assert "sequence=3" in line and "webhook-id=msg_cli" in line
    listen_process.send_signal(signal.SIGINT)
    assert listen_process.wait(timeout=30) == 0
    assert not (tmp_path / "data").exists()  # nothing created: no secrets file, no data dir
