"""End to end: ``onboarding dev`` as a user runs it, in a subprocess on free ports and a temp
directory; signed webhooks over HTTP; state read back over HTTP and through ``onboarding status``;
stopped and started again with the same state; no process left behind. Commands from another
shell in the same directory find it with nothing exported (``dev.json``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from onboarding.core.signatures import sign
from tests.conftest import free_port, unique_user
from tests.output_lines import OutputLines
from tests.smile_samples import BASE_TIME, webhook_body

ONBOARDING = Path(sys.executable).parent / "onboarding"


def processes_using(marker: str) -> list[int]:
    """PIDs whose command line mentions ``marker`` (our temp dir), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)  # polling interval; the deadline above bounds the wait
    raise AssertionError(f"timed out waiting for {what}")


class DevService:
    def __init__(self, data_dir: Path, *, in_directory: bool = False) -> None:
        """``in_directory``: run in ``data_dir``'s parent with the default data directory
        (``./.onboarding``), as a user does, instead of passing ``--data-dir``."""
        self.data_dir = data_dir
        self.in_directory = in_directory
        self.port, self.temporal_port, self.ui_port = free_port(), free_port(), free_port()
        self.smile_port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SMILE_", "ONBOARDING_", "TEMPORAL_"))
        }
        self.process: subprocess.Popen[str] | None = None
        self.output = ""

    def start(self, **extra_env: str) -> None:
        """``extra_env``: for dev only, never for the commands from another shell."""
        where = [] if self.in_directory else ["--data-dir", str(self.data_dir)]
        self.process = subprocess.Popen(
            [
                str(ONBOARDING),
                "dev",
                *where,
                "--port",
                str(self.port),
                "--temporal-port",
                str(self.temporal_port),
                "--ui-port",
                str(self.ui_port),
                "--smile-port",
                str(self.smile_port),
            ],
            env={**self.env, **extra_env},
            cwd=self.data_dir.parent if self.in_directory else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"onboarding dev exited: {self.process.stdout.read()}")  # type: ignore[union-attr]
            try:
                return httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 90, "onboarding dev to be ready")
        # written just after the API is up: from then on other shells find this dev
        wait_for(lambda: (self.data_dir / "dev.json").is_file(), 30, "dev.json")

    def stop(self, sig: int) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        out, _ = self.process.communicate(timeout=60)
        self.output = out
        return self.process.returncode

    @property
    def secrets(self) -> dict[str, str]:
        return json.loads((self.data_dir / "secrets.json").read_text())  # type: ignore[no-any-return]

    def status_command(self, user: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.command("status", user, *extra)

    def bare_command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """An ``onboarding`` command from another shell in the dev's directory, with nothing
        exported: it finds the service through ``.onboarding/dev.json``."""
        assert self.in_directory
        return subprocess.run(
            [str(ONBOARDING), *args],
            env=self.bare_env,
            cwd=self.data_dir.parent,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    @property
    def bare_env(self) -> dict[str, str]:
        # no TEMPORAL_*, SMILE_* or ONBOARDING_* at all; only a temporal.toml the developer may
        # have in their home is kept out of the way (a profile's address would rightly win)
        return {**self.env, "TEMPORAL_CONFIG_FILE": str(self.data_dir.parent / "none.toml")}

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """An ``onboarding`` command from another shell, told where the service is as the
        banner says."""
        env = {
            **self.env,
            "TEMPORAL_ADDRESS": f"127.0.0.1:{self.temporal_port}",
            "ONBOARDING_DATA_DIR": str(self.data_dir),
        }
        return subprocess.run(
            [str(ONBOARDING), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def service(tmp_path: Path) -> Iterator[DevService]:
    dev = DevService(tmp_path / "data")
    yield dev
    if dev.process is not None and dev.process.poll() is None:
        dev.process.kill()
        dev.process.wait()
    for pid in processes_using(str(tmp_path)):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def service_here(tmp_path: Path) -> Iterator[DevService]:
    """``onboarding dev`` started in a directory with the default data directory."""
    dev = DevService(tmp_path / ".onboarding", in_directory=True)
    yield dev
    if dev.process is not None and dev.process.poll() is None:
        dev.process.kill()
        dev.process.wait()
    for pid in processes_using(str(tmp_path)):
        os.kill(pid, signal.SIGKILL)


def test_dev_runs_a_journey_and_keeps_it_across_a_restart(service: DevService) -> None:
    service.start()
    secrets = service.secrets
    assert (service.data_dir / "secrets.json").stat().st_mode & 0o077 == 0
    admin = {"Authorization": f"Bearer {secrets['adminToken']}"}
    user = unique_user()
    for at, event_type in enumerate(("USER_CREATED", "ACCOUNT_CREATED", "ACCOUNT_CONNECTED")):
        body = webhook_body(event_type, user, created_at=BASE_TIME + timedelta(seconds=at))
        response = httpx.post(
            f"{service.base}/webhooks/smile",
            content=body,
            headers={"Smile-Signature": sign(body, secrets["webhookSecret"])},
        )
        assert response.status_code == 202, response.text

    def connected() -> bool:
        view = httpx.get(f"{service.base}/onboardings/{user}", headers=admin).json()
        return view.get("stage") == "connected" and view.get("eventsTotal") == 3

    wait_for(connected, 30, "the journey to be visible over HTTP")
    as_json = service.status_command(user, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["stage"] == "connected"
    readable = service.status_command(user)
    assert "Stage      connected" in readable.stdout
    assert "ACCOUNT_CONNECTED" in readable.stdout

    # Who has waited longest, the stats, and a bulk change, from the CLI.
    listed = service.command("list", "--sort", "longest_in_stage", "--where", "stage=connected",
                             "--json")  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    (item,) = json.loads(listed.stdout)["items"]
    assert item["userId"] == user and item["timeInStage"] >= 0
    stats = service.command("stats", "--json")
    assert stats.returncode == 0, stats.stderr
    connected_stats = json.loads(stats.stdout)["stages"]["connected"]
    assert (connected_stats["open"], connected_stats["oldest"]["userId"]) == (1, user)
    changed = service.command("timeouts", "--where", "stage=connected", "--set", "connected=2d",
                              "--wait", "--json")  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    progress = json.loads(changed.stdout)["progress"]
    assert (progress["state"], progress["done"], progress["failed"]) == ("completed", 1, 0)
    after = json.loads(service.status_command(user, "--json").stdout)
    assert after["timeouts"]["stall"]["connected"] == 2 * 86400
    both = service.command("cancel", user, "--where", "stage=connected")
    assert both.returncode != 0 and "not both" in both.stderr

    assert service.stop(signal.SIGINT) == 0
    assert "stopped." in service.output
    assert secrets["adminToken"] in service.output  # the banner shows what is in use
    assert secrets["notifySecret"] in service.output
    assert "Notices            off (ONBOARDING_NOTIFY_URL is not set)" in service.output
    assert "export TEMPORAL_ADDRESS" not in service.output  # nothing to export any more
    wait_for(lambda: not processes_using(str(service.data_dir)), 30, "no orphan processes")

    service.start()
    assert service.secrets == secrets  # reused, not regenerated
    view = httpx.get(f"{service.base}/onboardings/{user}", headers=admin).json()
    assert (view["stage"], view["eventsTotal"]) == ("connected", 3)
    assert service.stop(signal.SIGTERM) == 0
    wait_for(lambda: not processes_using(str(service.data_dir)), 30, "no orphan processes")


def test_dev_runs_offline_against_the_smile_stand_in(service: DevService) -> None:
    metrics_port = free_port()
    service.start(ONBOARDING_WORKER_METRICS_PORT=str(metrics_port))
    admin = {"Authorization": f"Bearer {service.secrets['adminToken']}"}
    started = httpx.post(f"{service.base}/onboardings", headers=admin, json={}, timeout=30)
    assert started.status_code == 201, started.text
    user = started.json()["userId"]
    assert user.startswith("standin-")
    # The stand-in signs and delivers a webhook, as Smile would.
    standin = f"http://127.0.0.1:{service.smile_port}"
    sent = httpx.post(f"{standin}/_control/webhooks", timeout=30,
                      json={"userId": user, "type": "ACCOUNT_CONNECTED"}).json()  # fmt: skip
    assert (sent["sent"], sent["status"]) == (True, 202), sent

    def connected() -> bool:
        view = httpx.get(f"{service.base}/onboardings/{user}", headers=admin).json()
        return view.get("stage") == "connected"

    wait_for(connected, 30, "the stand-in's webhook to arrive")
    # Metrics: the API's, and the worker's with the port set (the SDK's and the onboarding's).
    api_metrics = text_string_to_metric_families(httpx.get(f"{service.base}/metrics").text)
    webhooks = next(f for f in api_metrics if f.name == "onboarding_webhooks").samples
    assert [(s.labels, s.value) for s in webhooks if s.name.endswith("_total")] == [
        ({"type": "ACCOUNT_CONNECTED", "outcome": "signalled"}, 1)
    ]
    worker_url = f"http://127.0.0.1:{metrics_port}/metrics"

    def counted() -> bool:
        worker_metrics = httpx.get(worker_url).text
        return "temporal_workflow_task_execution_latency_seconds_count{" in worker_metrics and any(
            line.startswith("onboarding_stage_transitions_total{") and 'to="connected"' in line
            for line in worker_metrics.splitlines()
        )

    wait_for(counted, 30, "the worker's metrics")
    assert service.stop(signal.SIGTERM) == 0
    assert worker_url in service.output  # the banner says where


def test_a_taken_port_is_a_clear_error(service: DevService) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", service.temporal_port))
        taken.listen()
        result = subprocess.run(
            [
                str(ONBOARDING),
                "dev",
                "--data-dir",
                str(service.data_dir),
                "--port",
                str(service.port),
                "--temporal-port",
                str(service.temporal_port),
            ],
            env=service.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"port {service.temporal_port}" in result.stderr
    assert "--temporal-port" in result.stderr
    assert "Traceback" not in result.stderr


def test_operators_work_the_dead_letter_and_read_the_service_from_the_cli(
    service: DevService,
) -> None:
    service.start()
    secret = service.secrets["webhookSecret"]
    user = unique_user()
    broken = json.dumps({"id": "evt-broken", "type": "ACCOUNT_CREATED", "data": {"userId": user}})
    response = httpx.post(
        f"{service.base}/webhooks/smile",
        content=broken,
        headers={"Smile-Signature": sign(broken.encode(), secret)},
    )
    assert response.json()["outcome"] == "dead_lettered", response.text
    dead = response.json()["deadLetterId"]

    health = service.command("status")
    assert health.returncode == 0, health.stderr
    assert "Service    ready" in health.stdout and "1 dead letter(s)" in health.stdout
    assert json.loads(service.command("status", "--json").stdout)["spool"]["deadLetters"] == 1

    listed = json.loads(service.command("dead-letters", "list", "--json").stdout)
    assert [item["id"] for item in listed["items"]] == [dead]
    shown = service.command("dead-letters", "show", dead)
    assert "createdAt: Field required" in shown.stdout and "evt-broken" in shown.stdout
    replay = service.command("dead-letters", "replay", dead)
    assert replay.returncode == 1 and "still cannot be used" in replay.stderr
    assert "Traceback" not in replay.stderr

    # A release with the fix would accept it: the same webhook, now whole, kept by an older one.
    fixed = webhook_body("ACCOUNT_CREATED", user)
    add = """
import asyncio, sys
from datetime import UTC, datetime
from onboarding.service.spool import open_spool

async def main() -> None:
    spool = open_spool(sys.argv[1], 1 << 20)
    await spool.open()
    letter = await spool.add_dead_letter(
        sys.stdin.buffer.read(), "refused by an older release", None, None, datetime.now(UTC)
    )
    print(letter.id)
    await spool.close()

asyncio.run(main())
"""
    kept = subprocess.run(
        [sys.executable, "-c", add, str(service.data_dir / "spool.sqlite3")],
        input=fixed, capture_output=True, check=False,
    )  # fmt: skip
    assert kept.returncode == 0, kept.stderr.decode()
    fixed_id = kept.stdout.decode().strip()
    replayed = service.command("dead-letters", "replay", fixed_id, "--json")
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["outcome"] == "signalled"
    assert service.command("status", user, "--json").returncode == 0

    discarded = service.command("dead-letters", "discard", dead)
    assert discarded.returncode == 0, discarded.stderr
    assert service.command("dead-letters", "list").stdout.strip() == "no dead letters"
    missing = service.command("dead-letters", "show", dead)
    assert missing.returncode == 1 and "no dead letter" in missing.stderr
    assert service.stop(signal.SIGTERM) == 0


def test_commands_in_the_same_directory_find_dev_with_nothing_exported(
    service_here: DevService,
) -> None:
    """A user's session: `onboarding listen` and `onboarding start`/`status` in other shells
    of the same directory, nothing exported; dev sends its notices to the listener."""
    service = service_here
    listen_port = free_port()
    service.start(ONBOARDING_NOTIFY_URL=f"http://127.0.0.1:{listen_port}/")
    dev_file = service.data_dir / "dev.json"
    assert dev_file.stat().st_mode & 0o077 == 0
    described = json.loads(dev_file.read_text())
    assert service.process is not None and described["pid"] == service.process.pid
    assert described["apiUrl"] == service.base
    assert described["temporalAddress"] == f"127.0.0.1:{service.temporal_port}"
    assert described["temporalNamespace"] == "default"
    assert described["temporalUiUrl"] == f"http://127.0.0.1:{service.ui_port}"
    assert described["noticeEndpoints"] == 1
    assert "Secret" not in dev_file.read_text()  # secrets stay in secrets.json

    # `onboarding listen` verifies with dev's notify secret, found the same way
    listen = subprocess.Popen(
        [str(ONBOARDING), "listen", "--port", str(listen_port)],
        env=service.bare_env,
        cwd=service.data_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = OutputLines(listen.stdout)
        assert "the running onboarding dev's" in lines.wait_for("Verifying with")
        lines.wait_for("Ctrl-C stops.")

        started = service.bare_command("start", "--json")
        assert started.returncode == 0, started.stderr
        issued = json.loads(started.stdout)
        user = issued["userId"]
        assert user.startswith("standin-")  # created at dev's stand-in, by dev's worker
        status = service.bare_command("status", user, "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["userId"] == user
        health = service.bare_command("status")
        assert health.returncode == 0, health.stderr
        assert "Service    ready" in health.stdout
        # the callback token was signed with dev's callback secret: dev's API takes it
        callback = httpx.post(
            f"{service.base}/onboardings/{user}/callbacks",
            headers={"Authorization": f"Bearer {issued['callbackToken']}"},
            json={"callback": "onUIEvent", "data": {"eventName": "MfaPageOpened"}},
            timeout=30,
        )
        assert callback.status_code == 202, callback.text

        # started from a shell without ONBOARDING_NOTIFY_URL, with dev's options all the same:
        # its notices reach the listener, signed with the secret listen found
        heard = lines.wait_for(f"userId={user}", timeout=60)
        assert "onboarding.started" in heard and "sequence=1" in heard and "→ 204" in heard
        listen.send_signal(signal.SIGINT)
        assert listen.wait(timeout=30) == 0
    finally:
        if listen.poll() is None:
            listen.kill()
            listen.wait()

    assert service.stop(signal.SIGINT) == 0
    assert "onboarding listen" in service.output and "Notices            on" in service.output
    assert not dev_file.exists()  # stopped: nothing to find any more
