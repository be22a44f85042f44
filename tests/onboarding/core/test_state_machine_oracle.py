"""The state machine against an oracle: a second, deliberately simple model of what each fact
should be, computed from the whole set of distinct events at once (the latest event of each
register by the documented rule, a union, a sum, an "any").

The permutation properties (test_state_machine_properties.py) show that arrival order does not
matter; they cannot see a merge that is consistently wrong (``min`` for ``max``, a tie-break
field dropped), since a wrong merge can be order-independent too. This test compares the RESULT
with the model. Ids are ``et-<n>``, fixed per journey, so every tie-break is reproducible."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from onboarding.core.models import ConnectionStatus, Event, Facts, Journal, Source, Stage
from onboarding.core.state_machine import apply_all, derive_stage, new_journal
from tests.smile_samples import BASE_TIME

REQUIRED = ["identity", "employments", "incomes"]

# The documented lifecycles (docs/events.md, "Ties in the same second"), earliest step first.
ACCOUNT_STEPS = ["pending", "awaiting_mfa", "error", "connected", "disconnected"]
TASK_STEPS = {"STARTED": 0, "FINISHED": 1, "FAILED": 2, "SUCCEEDED": 3}  # others rank as FINISHED
ARCHIVE_STEPS = ["started", "failed", "analyzed", "revoked"]
INVITE_STEPS = ["invited", "linked"]
WIDGET_STEPS = ["open", "closed"]
SESSION_STEPS = ["USER_SESSION_COMPLETED", "USER_SESSION_RESET"]

ACCOUNT_TYPES = {
    "ACCOUNT_CREATED": "pending",
    "ACCOUNT_CONNECTED": "connected",
    "ACCOUNT_DISCONNECTED": "disconnected",
    "ACCOUNT_FAILED": "error",
    "ACCOUNT_AWAITING_MFA": "awaiting_mfa",
    "onAccountCreated": "pending",
    "onAccountConnected": "connected",
    "onAccountRemoved": "disconnected",
    "onAccountError": "error",
}
ARCHIVE_TYPES = {
    "ARCHIVE_STARTED": "started",
    "ARCHIVE_ANALYZED": "analyzed",
    "ARCHIVE_REVOKED": "revoked",
    "ARCHIVE_FAILED": "failed",
}
DATA_TYPES = {
    "IDENTITY_ADDED": "identity",
    "EMPLOYMENTS_ADDED": "employments",
    "INCOMES_ADDED": "incomes",
    "INCOMES_UPDATED": "incomes",
    "DOCUMENTS_UPDATED": "documents",
}
TASK_TYPES = {"TASK_STARTED": "task", "TASK_FINISHED": "task", "ACCOUNT_SYNC_TASK_FINISHED": "sync"}
SMILE = [
    *[t for t in ACCOUNT_TYPES if t.isupper() and t != "ACCOUNT_AWAITING_MFA"],
    *TASK_TYPES,
    *ARCHIVE_TYPES,
    *DATA_TYPES,
    "USER_CREATED",
    "INVITE_INVITED",
    "INVITE_LINKED",
    "USER_SESSION_COMPLETED",
    "USER_SESSION_RESET",
    "RECORD_CREATED",
    "BRAND_NEW_EVENT",
]
VOCABULARY = {
    Source.WEBHOOK: SMILE,
    Source.RECONCILE: [*SMILE, "ACCOUNT_AWAITING_MFA"],
    Source.WIDGET: [
        *[t for t in ACCOUNT_TYPES if t.startswith("on")],
        "onTokenExpired",
        "onClose",
        "onUploadsCreated",
        "onUploadsRemoved",
        "onUIEvent",
        "onUIEvent",
        "onSomethingNew",
    ],
}
# Each field an effect reads, well formed or absent (None: left out of the payload). Two
# providers at most, so the widget's cap on providers never decides.
FIELDS: dict[str, list[Any]] = {
    "accountId": [None, "a-1", "a-2"],
    "providers": [None, ["abccorp"], ["xyz"], ["abccorp", "xyz"]],
    "providerId": [None, "abccorp", "xyz"],
    "sourceId": [None, "a-1", "ar-1"],
    "sourceType": [None, "ACCOUNT", "archive"],
    "taskType": [None, "SYNC"],
    "status": [None, "SUCCEEDED", "failed", "RUNNING"],
    "datapoints": [None, ["IDENTITIES"], []],
    "archiveId": [None, "ar-1", "ar-2"],
    "inviteId": [None, "iv-1", "iv-2"],
    "count": [None, 0, 3, True],
    "errorCode": [None, "E1", "E2"],
    "errorMessage": [None, "m1", "m2"],
    "reason": [None, "exit", "error"],
    "eventName": [None, "LoginPageOpened", "MfaPageOpened"],
    "account": [None, {"accountId": "a-1"}, {"providerId": "abccorp"}, {"providerId": "xyz"}],
    "session": [None, {"status": "COMPLETED", "channel": "WinkSite"}, {"channel": "Email"}, {}],
}
PAYLOADS = st.fixed_dictionaries({k: st.sampled_from(v) for k, v in FIELDS.items()}).map(
    lambda d: {k: v for k, v in d.items() if v is not None}
)


@st.composite
def journeys(draw: st.DrawFn) -> list[Event]:
    events = []
    for i in range(draw(st.integers(1, 20))):
        source = draw(
            st.sampled_from([Source.WEBHOOK, Source.WEBHOOK, Source.RECONCILE, Source.WIDGET])
        )
        at = BASE_TIME + timedelta(seconds=draw(st.integers(0, 4)))  # ties are common
        event = Event(
            id=f"et-{i:02}",
            type=draw(st.sampled_from(VOCABULARY[source])),
            source=source,
            created_at=at,
            received_at=at,
            data={"userId": "u", **draw(PAYLOADS)},
            version=draw(st.sampled_from([1, 1, 1, 2])),
        )
        events.append(event)
    return events


# --- the model: each fact from the whole set of events --------------------------------------


def text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def proof(e: Event) -> bool:
    return e.source is not Source.WIDGET


def known(e: Event) -> bool:
    return e.type in VOCABULARY[e.source] and e.type not in ("BRAND_NEW_EVENT", "onSomethingNew")


def task_of(e: Event) -> tuple[str, str, str, str, str] | None:
    """(key, source id, source type, task type, status) of a task event, None if it has none."""
    source_id = text(e.data, "sourceId") or text(e.data, "accountId")
    if e.type not in TASK_TYPES or source_id is None:
        return None
    source_type = (text(e.data, "sourceType") or "ACCOUNT").upper()
    task_type = text(e.data, "taskType") or "UNKNOWN"
    stated = text(e.data, "status")
    if stated is not None:
        status = stated.upper()
    elif e.type == "TASK_STARTED":
        status = "STARTED"
    else:
        points = e.data.get("datapoints")
        saved = isinstance(points, list) and any(isinstance(p, str) and p for p in points)
        status = "SUCCEEDED" if saved else "FINISHED"
    key = f"{TASK_TYPES[e.type]}:{source_type}:{source_id}:{task_type}"
    return key, source_id, source_type, task_type, status


def account_reports(events: list[Event]) -> list[tuple[str, str, Event]]:
    """Every (account, status, event) the events report, by the documented rules: account
    events, data or a succeeded account task as proof of connection, an MFA screen naming it."""
    reports = []
    for e in events:
        account_id = text(e.data, "accountId")
        if e.type in ACCOUNT_TYPES and account_id:
            reports.append((account_id, ACCOUNT_TYPES[e.type], e))
        elif e.type in DATA_TYPES and account_id:
            reports.append((account_id, "connected", e))
        elif (task := task_of(e)) and task[4] == "SUCCEEDED" and task[2] == "ACCOUNT":
            reports.append((task[1], "connected", e))
        elif e.type == "onUIEvent" and text(e.data, "eventName") == "MfaPageOpened":
            named = e.data.get("account")
            if isinstance(named, dict) and text(named, "accountId"):
                reports.append((named["accountId"], "awaiting_mfa", e))
    return reports


def model_accounts(events: list[Event]) -> dict[str, dict[str, Any]]:
    by_account: dict[str, list[tuple[str, Event]]] = {}
    for account_id, status, e in account_reports(events):
        by_account.setdefault(account_id, []).append((status, e))
    accounts = {}
    for account_id, reports in by_account.items():

        def errors(status: str, e: Event) -> tuple[str | None, str | None]:
            if status != "error":
                return None, None
            return text(e.data, "errorCode"), text(e.data, "errorMessage")

        status, latest = max(
            reports,
            key=lambda r: (
                proof(r[1]),
                r[1].created_at,
                r[1].source is Source.RECONCILE,
                ACCOUNT_STEPS.index(r[0]),
                tuple(c or "" for c in errors(*r)),
                r[1].id,
            ),
        )
        providers: set[str] = set()
        for _, e in reports:
            listed = e.data.get("providers")
            providers |= set(listed) if isinstance(listed, list) else set()
            providers |= {text(e.data, "providerId")} - {None}  # type: ignore[arg-type]
        accounts[account_id] = {
            "status": status,
            "errors": errors(status, latest),
            "reported_by": latest.source,
            "updated_at": latest.created_at,
            "event_id": latest.id,
            "providers": sorted(providers),
            "ever_connected": any(s == "connected" and proof(e) for s, e in reports),
        }
    return accounts


def latest_of(
    items: list[tuple[Any, Event]], rank: Any, proof_counts: bool = True
) -> tuple[Any, Event]:
    """The latest of a register's reports: (proof, createdAt, reconcile, step, content, id)."""
    return max(
        items,
        key=lambda r: (
            proof(r[1]) if proof_counts else True,
            r[1].created_at,
            r[1].source is Source.RECONCILE if proof_counts else True,
            *rank(r),
            r[1].id,
        ),
    )


def model_tasks(events: list[Event]) -> dict[str, dict[str, Any]]:
    by_key: dict[str, list[tuple[tuple[str, str, str, str, str], Event]]] = {}
    for e in events:
        if (task := task_of(e)) is not None:
            by_key.setdefault(task[0], []).append((task, e))
    tasks = {}
    for key, reports in by_key.items():
        # A task's source never decides (tasks come from Smile only).
        task, latest = latest_of(
            reports,
            lambda r: (TASK_STEPS.get(r[0][4], 1), (r[0][4], text(r[1].data, "errorCode") or "")),
            proof_counts=False,
        )
        tasks[key] = {
            "source": task[1:4],
            "status": task[4],
            "error_code": text(latest.data, "errorCode"),
            "succeeded": any(t[4] == "SUCCEEDED" for t, _ in reports),
            "updated_at": latest.created_at,
            "event_id": latest.id,
        }
    return tasks


def model_archives(events: list[Event]) -> dict[str, dict[str, Any]]:
    by_id: dict[str, list[tuple[str, Event]]] = {}
    for e in events:
        if e.type in ARCHIVE_TYPES and (archive_id := text(e.data, "archiveId")):
            by_id.setdefault(archive_id, []).append((ARCHIVE_TYPES[e.type], e))
    archives = {}
    for archive_id, reports in by_id.items():

        def errors(r: tuple[str, Event]) -> tuple[str, str]:
            failed = r[0] == "failed"
            code, message = text(r[1].data, "errorCode"), text(r[1].data, "errorMessage")
            return (code or "", message or "") if failed else ("", "")

        status, latest = latest_of(reports, lambda r: (ARCHIVE_STEPS.index(r[0]), errors(r)))
        archives[archive_id] = {
            "status": status,
            "errors": tuple(c or None for c in errors((status, latest))),
            "reported_by": latest.source,
            "updated_at": latest.created_at,
            "event_id": latest.id,
            "ever_analyzed": any(s == "analyzed" and proof(e) for s, e in reports),
        }
    return archives


def model_invite(events: list[Event]) -> tuple[Any, ...] | None:
    invites = [
        (e.type.removeprefix("INVITE_").lower(), e) for e in events if e.type.startswith("INVITE_")
    ]
    if not invites:
        return None
    status, latest = latest_of(
        invites,
        lambda r: (INVITE_STEPS.index(r[0]), (text(r[1].data, "inviteId") or "",)),
        proof_counts=False,
    )
    return text(latest.data, "inviteId"), status, latest.created_at, latest.id


def model_session(events: list[Event]) -> tuple[Any, ...] | None:
    sessions = []
    for e in events:
        session = e.data.get("session")
        if e.type in SESSION_STEPS and isinstance(session, dict):
            default = "COMPLETED" if e.type == "USER_SESSION_COMPLETED" else "IN_PROGRESS"
            sessions.append(((text(session, "status") or default, text(session, "channel")), e))
    if not sessions:
        return None
    (status, channel), latest = latest_of(
        sessions,
        lambda r: (SESSION_STEPS.index(r[1].type), (r[0][0], r[0][1] or "")),
        proof_counts=False,
    )
    return status, channel, latest.type, latest.created_at, latest.id


def model_widget(events: list[Event]) -> dict[str, Any]:
    states = [("closed", text(e.data, "reason"), e) for e in events if e.type == "onClose"]
    states += [("open", None, e) for e in events if e.type == "onUIEvent"]
    state: tuple[Any, ...] = ("unknown", None, None, None)
    if states:
        name, reason, latest = max(
            states, key=lambda s: (s[2].created_at, WIDGET_STEPS.index(s[0]), s[1] or "", s[2].id)
        )
        state = (name, reason, latest.created_at, latest.id)
    screens = [
        (e.created_at, screen, e.id)
        for e in events
        if e.type == "onUIEvent" and (screen := text(e.data, "eventName"))
    ]
    screen = max(screens) if screens else (None, None, None)
    mfa: dict[str, datetime] = {}
    for e in events:
        named = e.data.get("account")
        if (
            e.type == "onUIEvent"
            and text(e.data, "eventName") == "MfaPageOpened"
            and isinstance(named, dict)
            and not text(named, "accountId")
            and (provider := text(named, "providerId"))
        ):
            mfa[provider] = max(mfa.get(provider, e.created_at), e.created_at)
    return {
        "state": state,
        "screen": screen,
        "mfa": mfa,
        "uploads": (
            sum(e.type == "onUploadsCreated" for e in events),
            sum(e.type == "onUploadsRemoved" for e in events),
        ),
        "token": (
            sum(e.type == "onTokenExpired" for e in events),
            max((e.created_at for e in events if e.type == "onTokenExpired"), default=None),
        ),
    }


def model_data(events: list[Event]) -> dict[str, tuple[int, int, datetime]]:
    data: dict[str, tuple[int, int, datetime]] = {}
    for e in events:
        if e.type in DATA_TYPES:
            count = e.data.get("count")
            items = count if type(count) is int else 1
            n, total, last = data.get(DATA_TYPES[e.type], (0, 0, e.created_at))
            data[DATA_TYPES[e.type]] = (n + 1, total + items, max(last, e.created_at))
    return data


def model_stage(events: list[Event]) -> Stage:
    tasks = model_tasks(events)
    archives = model_archives(events)
    accounts = model_accounts(events)
    widget = model_widget(events)
    if (
        any(k.startswith("task:") and t["succeeded"] for k, t in tasks.items())
        or any(a["ever_analyzed"] for a in archives.values())
        or set(REQUIRED) <= set(model_data(events))
    ):
        return Stage.DATA_READY
    if any(a["status"] in ("started", "analyzed") for a in archives.values()) or (
        widget["uploads"][0] > widget["uploads"][1]
    ):
        return Stage.UPLOADS
    if any(a["status"] == "connected" for a in accounts.values()):
        return Stage.CONNECTED
    return Stage.ACCOUNT_CREATED if accounts else Stage.CREATED


# --- the machine's facts in the model's shape ------------------------------------------------


def seen_accounts(facts: Facts) -> dict[str, dict[str, Any]]:
    return {
        k: {
            "status": a.status.value,
            "errors": (a.error_code, a.error_message),
            "reported_by": a.reported_by,
            "updated_at": a.updated_at,
            "event_id": a.event_id,
            "providers": a.providers,
            "ever_connected": a.ever_connected,
        }
        for k, a in facts.accounts.items()
    }


def seen_tasks(facts: Facts) -> dict[str, dict[str, Any]]:
    return {
        k: {
            "source": (t.source_id, t.source_type, t.task_type),
            "status": t.status,
            "error_code": t.error_code,
            "succeeded": t.succeeded,
            "updated_at": t.updated_at,
            "event_id": t.event_id,
        }
        for k, t in facts.tasks.items()
    }


def seen_archives(facts: Facts) -> dict[str, dict[str, Any]]:
    return {
        k: {
            "status": a.status,
            "errors": (a.error_code, a.error_message),
            "reported_by": a.reported_by,
            "updated_at": a.updated_at,
            "event_id": a.event_id,
            "ever_analyzed": a.ever_analyzed,
        }
        for k, a in facts.archives.items()
    }


def seen_widget(facts: Facts) -> dict[str, Any]:
    w = facts.widget
    return {
        "state": (w.state, w.close_reason, w.updated_at, w.event_id),
        "screen": (w.screen_updated_at, w.last_screen, w.screen_event_id),
        "mfa": w.mfa_providers,
        "uploads": (w.uploads_created, w.uploads_removed),
        "token": (facts.token.expired_reports, facts.token.expired_reported_at),
    }


def assert_matches_the_model(journal: Journal, events: list[Event]) -> None:
    distinct = list({(e.source, e.id): e for e in reversed(events)}.values())
    facts = journal.facts
    assert seen_accounts(facts) == model_accounts(distinct)
    assert seen_tasks(facts) == model_tasks(distinct)
    assert seen_archives(facts) == model_archives(distinct)
    assert seen_widget(facts) == model_widget(distinct)
    invite = facts.invite
    assert (
        invite and (invite.invite_id, invite.status, invite.updated_at, invite.event_id)
    ) == model_invite(distinct)
    session = facts.session
    assert (
        session
        and (
            session.status,
            session.channel,
            session.event_type,
            session.updated_at,
            session.event_id,
        )
    ) == model_session(distinct)
    assert {k: (d.events, d.items, d.last_at) for k, d in facts.data.items()} == model_data(
        distinct
    )
    assert facts.user_created_at == min(
        (e.created_at for e in distinct if e.type == "USER_CREATED"), default=None
    )
    assert facts.last_event_at == max(e.created_at for e in distinct)
    assert facts.unknown_types == sorted({e.type for e in distinct if not known(e)})
    versions = [str(e.version) for e in distinct if e.version != 1]
    assert facts.other_versions == {v: versions.count(v) for v in set(versions)}
    assert derive_stage(facts, REQUIRED) is model_stage(distinct)
    assert [(r.created_at, r.source, r.id, r.type, r.known) for r in journal.history] == sorted(
        (e.created_at, e.source, e.id, e.type, known(e)) for e in distinct
    )
    assert (journal.events_total, journal.duplicates_ignored) == (
        len(distinct),
        len(events) - len(distinct),
    )


@settings(max_examples=150, deadline=None)
@given(journey=journeys(), data=st.data())
def test_every_fact_is_what_the_simple_model_says(
    journey: list[Event], data: st.DataObject
) -> None:
    duplicates = data.draw(st.lists(st.sampled_from(journey), max_size=4))
    delivered = data.draw(st.permutations(journey + duplicates))
    journal = apply_all(new_journal("u"), delivered)
    assert_matches_the_model(journal, delivered)


@settings(max_examples=100, deadline=None)
@given(journey=journeys(), data=st.data())
def test_a_journey_split_across_runs_with_redeliveries_is_the_same_journey(
    journey: list[Event], data: st.DataObject
) -> None:
    """Continue-as-new in the middle, and Smile redelivering some of the first part after it:
    the second run's journal (read back from JSON) ends where one run would."""
    cut = data.draw(st.integers(0, len(journey)))
    redelivered = data.draw(st.lists(st.sampled_from(journey[:cut]), max_size=3)) if cut else []
    first = apply_all(new_journal("u"), journey[:cut])
    carried = Journal.model_validate_json(first.model_dump_json())
    second = apply_all(carried, [*redelivered, *journey[cut:]])
    assert_matches_the_model(second, [*journey, *redelivered])
    assert second.model_dump() == apply_all(new_journal("u"), [*journey, *redelivered]).model_dump()


def test_the_model_sees_connected_accounts_like_the_machine() -> None:
    # A fixed journey through the model, so that the model itself is pinned.
    at = BASE_TIME
    events = [
        Event(id="et-1", type="ACCOUNT_CREATED", source=Source.WEBHOOK, created_at=at,
              received_at=at, data={"accountId": "a-1", "providers": ["abccorp"]}),
        Event(id="et-2", type="IDENTITY_ADDED", source=Source.WEBHOOK, created_at=at,
              received_at=at, data={"accountId": "a-1", "count": 2}),
    ]  # fmt: skip
    assert model_accounts(events)["a-1"]["status"] == ConnectionStatus.CONNECTED.value
    assert model_stage(events) is Stage.CONNECTED
    assert_matches_the_model(apply_all(new_journal("u"), events), events)
