"""What of a webhook is kept: nothing under ``data.payload`` or ``data.loginName``."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from onboarding.core.compact import without_dropped_fields

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def test_the_data_payload_and_login_name_are_left_out_of_a_kept_body() -> None:
    body = json.dumps(
        {"id": "e", "type": "TASK_FINISHED",
         "data": {"userId": "u", "payload": {"incomes": [1, 2]}, "loginName": "jane@example"}}
    ).encode()  # fmt: skip
    kept = json.loads(without_dropped_fields(body))
    assert kept == {"id": "e", "type": "TASK_FINISHED", "data": {"userId": "u"}}


@given(st.dictionaries(st.text(max_size=6), _json, max_size=4), _json, _json)
def test_only_those_two_fields_ever_change(
    data: dict[str, object], payload: object, login: object
) -> None:
    plain = json.dumps({"id": "e", "data": data}).encode()
    if not {"payload", "loginName"} & data.keys():
        assert without_dropped_fields(plain) == plain  # byte for byte
    with_both = json.dumps({"id": "e", "data": {**data, "payload": payload, "loginName": login}})
    kept = json.loads(without_dropped_fields(with_both.encode()))
    expected = {k: v for k, v in data.items() if k not in ("payload", "loginName")}
    assert kept == {"id": "e", "data": expected}


@given(st.binary(max_size=200))
def test_anything_else_is_kept_as_it_came(body: bytes) -> None:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    data = parsed.get("data") if isinstance(parsed, dict) else None
    if not (isinstance(data, dict) and {"payload", "loginName"} & data.keys()):
        assert without_dropped_fields(body) == body
