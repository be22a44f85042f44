"""Judging a signed body: for a user, for nobody, or for the dead-letter (and why)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onboarding.core.identity import is_valid_user_id
from onboarding.core.models import Source
from onboarding.core.webhook_triage import ForUser, NoUser, Unusable, event_from, triage


def body(**changes: object) -> bytes:
    envelope: dict[str, object] = {
        "id": "evt-1",
        "type": "ACCOUNT_CONNECTED",
        "version": 1,
        "createdAt": "2026-11-30T08:00:00Z",
        "data": {"userId": "tenantId-abc", "accountId": "acc-1"},
    }
    envelope.update(changes)
    return json.dumps({k: v for k, v in envelope.items() if v is not ...}).encode()


def test_an_event_for_a_user() -> None:
    verdict = triage(body())
    assert isinstance(verdict, ForUser)
    assert (verdict.user_id, verdict.envelope.id) == ("tenantId-abc", "evt-1")


def test_a_session_event_names_its_user_in_the_session() -> None:
    verdict = triage(body(type="USER_SESSION_COMPLETED", data={"session": {"userId": "u-1"}}))
    assert isinstance(verdict, ForUser) and verdict.user_id == "u-1"


def test_an_event_without_a_user() -> None:
    verdict = triage(body(data={"providerId": "p"}))
    assert isinstance(verdict, NoUser) and verdict.envelope.type == "ACCOUNT_CONNECTED"


@pytest.mark.parametrize(
    "raw, reason, event_id, type_",
    [
        (b"{not json", "the body is not JSON", None, None),
        (b"[1, 2]", "the body is not a JSON object", None, None),
        (body(createdAt=...), "createdAt: Field required", "evt-1", "ACCOUNT_CONNECTED"),
        (body(createdAt="yesterday"), "createdAt:", "evt-1", "ACCOUNT_CONNECTED"),
        (body(id=...), "id: Field required", None, "ACCOUNT_CONNECTED"),
        (body(type=7), "type:", "evt-1", None),
        (body(data=[1]), "data:", "evt-1", "ACCOUNT_CONNECTED"),
        (body(data={"userId": "no spaces allowed"}), "data.userId", "evt-1", "ACCOUNT_CONNECTED"),
        (body(data={"userId": 42}), "data.userId", "evt-1", "ACCOUNT_CONNECTED"),
    ],
)
def test_what_cannot_be_used_says_why(
    raw: bytes, reason: str, event_id: str | None, type_: str | None
) -> None:
    verdict = triage(raw)
    assert isinstance(verdict, Unusable)
    assert reason in verdict.reason
    assert (verdict.event_id, verdict.type) == (event_id, type_)


def test_an_overlong_id_is_not_used_as_a_label() -> None:
    verdict = triage(body(id="x" * 300))
    assert isinstance(verdict, Unusable) and verdict.event_id is None


def test_the_reason_never_repeats_a_value_from_the_body() -> None:
    secret = "s3cr3t-value-in-the-body"
    verdict = triage(body(createdAt=secret, data={"userId": secret}))
    assert isinstance(verdict, Unusable) and secret not in verdict.reason


@given(st.binary(max_size=300))
def test_any_bytes_get_a_verdict(raw: bytes) -> None:
    assert isinstance(triage(raw), ForUser | NoUser | Unusable)


_user_ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,30}", fullmatch=True),  # valid
    st.text(max_size=40),  # mostly not
    st.integers(),
    st.none(),
)


@given(
    user_id=_user_ids,
    in_session=st.booleans(),
    created_at=st.sampled_from(["2026-11-30T08:00:00Z", "2026-11-30T08:00:00", "soon", None]),
    type_=st.one_of(st.just("ACCOUNT_CONNECTED"), st.text(max_size=5), st.integers()),
)
def test_the_verdict_follows_the_envelope_and_the_user_id(
    user_id: object, in_session: bool, created_at: object, type_: object
) -> None:
    """A second, plain description: usable for a user exactly when the envelope validates and
    the user id (in ``data``, or in ``data.session``) is a valid Smile user id; no user when
    none is named; otherwise unusable."""
    data = {"session": {"userId": user_id}} if in_session else {"userId": user_id}
    raw = {"id": "e", "type": type_, "version": 1, "createdAt": created_at, "data": data}
    verdict = triage(json.dumps(raw).encode())
    valid_times = ("2026-11-30T08:00:00Z", "2026-11-30T08:00:00")
    envelope_ok = isinstance(type_, str) and len(type_) >= 1 and created_at in valid_times
    if not envelope_ok:
        assert isinstance(verdict, Unusable) and verdict.event_id == "e"
    elif user_id is None:
        assert isinstance(verdict, NoUser)
    elif isinstance(user_id, str) and is_valid_user_id(user_id):
        assert isinstance(verdict, ForUser) and verdict.user_id == user_id
    else:
        assert isinstance(verdict, Unusable) and "data.userId" in verdict.reason


def test_the_event_the_onboarding_receives() -> None:
    verdict = triage(body(data={"userId": "u-1", "accountId": "a", "extra": None}))
    assert isinstance(verdict, ForUser)
    received = datetime(2026, 11, 30, 9, tzinfo=UTC)
    event = event_from(verdict.envelope, received)
    assert (event.id, event.type, event.source, event.received_at) == (
        "evt-1",
        "ACCOUNT_CONNECTED",
        Source.WEBHOOK,
        received,
    )
    assert event.created_at == datetime(2026, 11, 30, 8, tzinfo=UTC)
    assert event.data["accountId"] == "a"
