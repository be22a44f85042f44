"""Listing longest-in-stage first and finding the oldest, on the real dev server's visibility.

Onboardings are seeded without a worker, each with the search attributes a real one would carry
(the time it entered its stage chosen by the test), so the order is known in advance."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from onboarding.core.identity import workflow_id_for
from onboarding.core.models import OnboardingInput, Stage, Status
from onboarding.core.selection import OnboardingFilter
from onboarding.service import listing
from onboarding.service.listing import (
    BadPageToken,
    ListOrder,
    Visibility,
    decode_sorted_token,
    encode_newest_token,
    encode_sorted_token,
    split,
)
from onboarding.service.onboardings import BadPageToken as ServiceBadPageToken
from onboarding.service.onboardings import Onboardings
from onboarding.service.settings import Settings
from tests.conftest import eventually
from workflows import search_attributes
from workflows.onboarding import OnboardingWorkflow

# --- the pure parts -----------------------------------------------------------------------------

T0 = datetime(2026, 11, 30, tzinfo=UTC)


@given(st.integers(min_value=1, max_value=10**9))
def test_splits_cover_the_window_in_equal_steps(width_ms: int) -> None:
    high = T0 + timedelta(milliseconds=width_ms)
    bounds = split(T0, high)
    assert len(bounds) == listing.SPLITS and bounds[-1] == high
    assert bounds == sorted(bounds) and all(T0 < b <= high for b in bounds)


@given(
    st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2100, 1, 1),
                 timezones=st.just(UTC)),
    st.text(min_size=1, max_size=60),
)  # fmt: skip
def test_a_sorted_page_token_round_trips(entered: datetime, workflow_id: str) -> None:
    assert decode_sorted_token(encode_sorted_token((entered, workflow_id))) == (
        entered,
        workflow_id,
    )


def test_a_token_for_the_other_order_is_refused() -> None:
    with pytest.raises(BadPageToken):
        decode_sorted_token(encode_newest_token(b"opaque"))
    with pytest.raises(BadPageToken):
        decode_sorted_token("not base64!")


@given(st.lists(st.text(max_size=8), min_size=2, max_size=8, unique=True))
def test_inverted_ids_sort_in_reverse(ids: list[str]) -> None:
    assert sorted(ids, key=listing._inverted) == sorted(ids, reverse=True)


# --- on the dev server --------------------------------------------------------------------------


class Seeded:
    def __init__(self, client: Client, prefix: str, started_after: datetime) -> None:
        self.client = client
        self.prefix = prefix
        self.started_after = started_after
        self.entered: dict[str, datetime] = {}  # workflow id -> entered, for stage connected

    def expected(self, before: datetime | None = None) -> list[str]:
        chosen = [(e, w) for w, e in self.entered.items() if before is None or e < before]
        return [w for _, w in sorted(chosen)]


async def seed(client: Client, user: str, stage: Stage, entered: datetime) -> str:
    workflow_id = workflow_id_for(user)
    await client.start_workflow(
        OnboardingWorkflow.run,
        OnboardingInput(user_id=user, options=Settings().default_options()),
        id=workflow_id,
        task_queue=f"no-worker-{uuid.uuid4().hex[:8]}",  # nobody runs it: its attributes stay
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(search_attributes.STAGE, stage.value),
                SearchAttributePair(search_attributes.STATUS, Status.ACTIVE.value),
                SearchAttributePair(search_attributes.STAGE_ENTERED_AT, entered),
            ]
        ),
    )
    return workflow_id


@pytest.fixture
async def seeded(dev_env: WorkflowEnvironment) -> AsyncIterator[Seeded]:
    now = datetime.now(UTC)
    prefix = f"tenantId-listing-{uuid.uuid4().hex[:6]}"
    fleet = Seeded(dev_env.client, prefix, now)  # the server stamps its start times after this
    ages = [timedelta(hours=h) for h in range(1, 11)] + [timedelta(days=300)]
    ages.append(timedelta(hours=4))  # a tie with another: the workflow id decides
    random.Random(7).shuffle(ages)
    for i, age in enumerate(ages):
        workflow_id = await seed(dev_env.client, f"{prefix}-c{i:02d}", Stage.CONNECTED, now - age)
        fleet.entered[workflow_id] = now - age
    for i in range(2):  # another stage, older still: never listed under connected
        await seed(
            dev_env.client, f"{prefix}-a{i}", Stage.ACCOUNT_CREATED, now - timedelta(days=400)
        )
    ours = OnboardingFilter(started_after=fleet.started_after)

    async def visible() -> None:
        count = await dev_env.client.count_workflows(
            f"WorkflowId STARTS_WITH 'onboarding-{prefix}'"
        )
        assert count.count == len(fleet.entered) + 2
        assert await Onboardings(dev_env.client, Settings()).count(selection=ours) >= count.count

    await eventually(visible)
    try:
        yield fleet
    finally:
        async for execution in dev_env.client.list_workflows(
            f"WorkflowId STARTS_WITH 'onboarding-{prefix}' AND ExecutionStatus = 'Running'"
        ):
            await dev_env.client.get_workflow_handle(execution.id).terminate("test over")


def connected_ours(fleet: Seeded, **more: object) -> OnboardingFilter:
    # Running: earlier tests' seeds, terminated, keep their attributes.
    return OnboardingFilter(
        stage=Stage.CONNECTED, started_after=fleet.started_after, open_only=True, **more
    )


@pytest.mark.parametrize("read_target", [200, 1])
async def test_longest_in_stage_first_across_pages(
    dev_env: WorkflowEnvironment, seeded: Seeded, read_target: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Aiming to read one row, the counts narrow each page's window to just what it needs.
    monkeypatch.setattr(listing, "_READ_TARGET", read_target)
    ops = Onboardings(dev_env.client, Settings())
    shown, token, pages = [], None, 0
    while True:
        page = await ops.list(page_size=5, page_token=token, selection=connected_ours(seeded),
                              order=ListOrder.LONGEST_IN_STAGE)  # fmt: skip
        shown += [item.workflow_id for item in page.items]
        pages += 1
        ages = [item.time_in_stage for item in page.items]
        assert all(age is not None for age in ages)
        assert ages == sorted(ages, reverse=True)  # type: ignore[type-var]
        token = page.next_page_token
        if token is None:
            break
    assert shown == seeded.expected()
    assert pages == 3  # 12 in pages of 5


async def test_waiting_longer_than_leaves_out_the_recent(
    dev_env: WorkflowEnvironment, seeded: Seeded
) -> None:
    ops = Onboardings(dev_env.client, Settings())
    cutoff = datetime.now(UTC) - timedelta(hours=5, minutes=30)
    waiting = connected_ours(seeded, entered_stage_before=cutoff)
    page = await ops.list(page_size=50, selection=waiting, order=ListOrder.LONGEST_IN_STAGE)
    assert [item.workflow_id for item in page.items] == seeded.expected(before=cutoff)
    assert len(page.items) == 6  # 300 days, and 6 to 10 hours
    newest = await ops.list(
        page_size=50, selection=connected_ours(seeded, entered_stage_before=cutoff)
    )
    assert {i.workflow_id for i in newest.items} == set(seeded.expected(before=cutoff))


@pytest.mark.parametrize("scan_page", [1000, 0])
async def test_the_oldest_is_found_however_many_share_its_window(
    dev_env: WorkflowEnvironment, seeded: Seeded, scan_page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a scan page of 0 the counts narrow the window to a millisecond before reading it.
    monkeypatch.setattr(listing, "SCAN_PAGE", scan_page)
    visibility = Visibility(dev_env.client, timedelta(seconds=10))
    now = datetime.now(UTC)
    oldest = await visibility.oldest(connected_ours(seeded), now)
    assert oldest is not None and oldest.workflow_id == seeded.expected()[0]
    page, after = await visibility.longest_in_stage_page(connected_ours(seeded), 2, None, now)
    assert [p.workflow_id for p in page] == seeded.expected()[:2]
    assert after is not None and after[1] == seeded.expected()[1]
    nobody = connected_ours(seeded).model_copy(update={"started_after": now + timedelta(days=1)})
    assert await visibility.oldest(nobody, now) is None


async def test_a_token_from_the_other_order_is_a_bad_page_token(
    dev_env: WorkflowEnvironment, seeded: Seeded
) -> None:
    ops = Onboardings(dev_env.client, Settings())
    newest = await ops.list(page_size=1, selection=connected_ours(seeded))
    assert newest.next_page_token is not None
    with pytest.raises(ServiceBadPageToken):
        await ops.list(page_token=newest.next_page_token, selection=connected_ours(seeded),
                       order=ListOrder.LONGEST_IN_STAGE)  # fmt: skip


async def test_the_api_lists_by_time_in_stage_and_stats_name_the_oldest(
    api: httpx.AsyncClient, admin: dict[str, str], seeded: Seeded
) -> None:
    started_after = seeded.started_after.isoformat()
    response = await api.get(
        "/onboardings",
        params={"stage": "connected", "status": "active", "startedAfter": started_after,
                "sort": "longest_in_stage", "pageSize": 4, "waitingLongerThan": "90m"},
        headers=admin,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert [i["workflowId"] for i in body["items"]] == seeded.expected()[:4]
    assert body["nextPageToken"]
    assert all(i["timeInStage"] > 90 * 60 and i["stageEnteredAt"] for i in body["items"])

    stats = await api.get("/onboardings/stats", headers=admin)
    assert stats.status_code == 200
    connected = stats.json()["stages"]["connected"]
    # 300 days in connected: nobody else in this test session has waited that long there
    assert connected["oldest"]["workflowId"] == seeded.expected()[0]
    assert connected["open"] >= len(seeded.entered)
    assert connected["oldest"]["timeInStage"] >= timedelta(days=300).total_seconds()
    assert stats.json()["total"] >= sum(stats.json()["byStatus"].values()) - 0

    for params, problem in (
        ({"sort": "sideways"}, 422),
        ({"waitingLongerThan": "soon"}, 422),
        ({"waitingLongerThan": "0s"}, 422),
        ({"sort": "longest_in_stage", "pageToken": "bm9wZQ"}, 400),
    ):
        refused = await api.get("/onboardings", params=params, headers=admin)
        assert refused.status_code == problem, (params, refused.text)
