"""The bulk-operations endpoints through the real app, worker and dev server."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from onboarding.core.signatures import sign
from tests.conftest import WEBHOOK_SECRET, eventually, unique_user
from tests.smile_samples import webhook_body


async def test_a_bulk_timeouts_change_through_the_api(
    api: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    since = datetime.now(UTC).isoformat()
    users = [unique_user() for _ in range(2)]
    for user in users:
        body = webhook_body("ACCOUNT_CREATED", user)
        headers = {
            "Smile-Signature": sign(body, WEBHOOK_SECRET),
            "Content-Type": "application/json",
        }
        assert (await api.post("/webhooks/smile", content=body, headers=headers)).status_code == 202

    async def listed() -> None:
        params = {"stage": "account_created", "startedAfter": since}
        page = await api.get("/onboardings", headers=admin, params=params)
        assert {i["userId"] for i in page.json()["items"]} == set(users)

    await eventually(listed)
    request = {
        "operation": "timeouts",
        "where": {"stage": "account_created", "startedAfter": since},
        "timeouts": {"stall": {"account_created": "2d"}},
    }
    submitted = await api.post("/bulk-operations", json=request, headers=admin)
    assert submitted.status_code == 202, submitted.text
    operation = submitted.json()["id"]

    async def completed() -> dict[str, object]:
        status = (await api.get(f"/bulk-operations/{operation}", headers=admin)).json()
        assert status["progress"]["state"] == "completed"
        return dict(status)

    status = await eventually(completed, timeout=30)
    assert status["progress"] == {"state": "completed", "matched": 2, "done": 2,  # type: ignore[comparison-overlap]
                                  "skippedEnded": 0, "failed": 0, "failures": []}  # fmt: skip
    for user in users:
        view = (await api.get(f"/onboardings/{user}", headers=admin)).json()
        assert view["timeouts"]["stall"]["account_created"] == 2 * 86400
    stopped = await api.post(f"/bulk-operations/{operation}/stop", headers=admin)
    assert stopped.status_code == 200 and stopped.json()["progress"]["state"] == "completed"


async def test_bulk_requests_are_checked_before_anything_starts(
    api: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    assert (await api.post("/bulk-operations", json={"operation": "cancel"})).status_code == 401
    connected = {"stage": "connected"}
    for body, reason in (
        ({"operation": "timeouts", "where": connected}, "needs at least one timeout"),
        ({"operation": "timeouts", "where": connected, "timeouts": {"stall": {"nowhere": "1h"}}},
         "nowhere"),
        ({"operation": "reconcile", "where": connected, "reason": "why"}, "only for cancelling"),
        ({"operation": "cancel"}, "give at least one of stage"),  # a forgotten filter
        ({"operation": "cancel", "where": connected, "everything": True}, "no other criterion"),
        ({"operation": "cancel", "where": {"startedAfter": "2026-12-01T00:00:00Z",
                                           "startedBefore": "2026-11-01T00:00:00Z"}},
         "must be before"),
        ({"operation": "explode"}, "operation"),
        # a misspelt criterion is refused: ignored, it would have cancelled every "connected"
        ({"operation": "cancel", "where": {"stage": "connected", "statuss": "stalled"}},
         "statuss"),
        ({"operation": "cancel", "where": connected, "rate": 0}, "rate"),
        ({"operation": "cancel", "where": {"waitingLongerThan": "soon"}}, "invalid duration"),
    ):  # fmt: skip
        response = await api.post("/bulk-operations", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert reason in response.text, (body, response.text)
    missing = await api.get("/bulk-operations/bulk-cancel-0123456789abcdef", headers=admin)
    assert missing.status_code == 404
    assert (await api.get("/bulk-operations/other", headers=admin)).status_code == 422
