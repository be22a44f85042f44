"""Smile's ``externalMetadata`` limits (``ObjectExternalMetadata``), checked before calling it."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onboarding.core.external_metadata import (
    MAX_KEY_LENGTH,
    MAX_KEYS,
    MAX_VALUE_LENGTH,
    check_external_metadata,
)

keys = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=MAX_KEY_LENGTH)
values = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127),
                 max_size=MAX_VALUE_LENGTH)  # fmt: skip
valid = st.dictionaries(keys, values, max_size=MAX_KEYS)
non_strings = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=2), st.dictionaries(keys, values, max_size=2),
)  # fmt: skip


@given(valid)
def test_anything_within_the_limits_passes(metadata: dict[str, str]) -> None:
    check_external_metadata(metadata)


def test_no_metadata_passes() -> None:
    check_external_metadata(None)
    check_external_metadata({})


@given(st.dictionaries(keys, values, min_size=MAX_KEYS + 1, max_size=MAX_KEYS + 5))
def test_too_many_keys(metadata: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=f"at most {MAX_KEYS} keys"):
        check_external_metadata(metadata)


@given(valid, st.text(alphabet=string.ascii_letters, min_size=MAX_KEY_LENGTH + 1), values)
def test_a_key_too_long(metadata: dict[str, str], key: str, value: str) -> None:
    metadata = dict(list(metadata.items())[: MAX_KEYS - 1]) | {key: value}
    with pytest.raises(ValueError, match=f"characters long; at most {MAX_KEY_LENGTH}"):
        check_external_metadata(metadata)


@given(keys, st.text(alphabet=string.printable, min_size=MAX_VALUE_LENGTH + 1))
def test_a_value_too_long(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"characters long; at most {MAX_VALUE_LENGTH}"):
        check_external_metadata({key: value})


@given(keys, non_strings)
def test_a_value_that_is_not_a_string(key: str, value: Any) -> None:
    with pytest.raises(ValueError, match="must be a string, not "):
        check_external_metadata({key: value})


@given(st.text(min_size=1, max_size=MAX_KEY_LENGTH).filter(lambda s: not s.isascii()))
def test_non_ascii_anywhere(text: str) -> None:
    with pytest.raises(ValueError, match="non-ASCII"):
        check_external_metadata({text: "v"})
    with pytest.raises(ValueError, match="non-ASCII"):
        check_external_metadata({"k": text})


@given(st.dictionaries(st.text(max_size=60), st.one_of(st.text(max_size=600), non_strings),
                       max_size=8))  # fmt: skip
def test_the_checker_agrees_with_the_spec(metadata: dict[str, Any]) -> None:
    """An independent reading of the spec's rules: accepted exactly when all of them hold."""
    allowed = len(metadata) <= MAX_KEYS and all(
        len(k) <= MAX_KEY_LENGTH and k.isascii() and isinstance(v, str)
        and len(v) <= MAX_VALUE_LENGTH and v.isascii()
        for k, v in metadata.items()
    )  # fmt: skip
    try:
        check_external_metadata(metadata)
    except ValueError as err:
        assert not allowed, err
        assert str(err)
    else:
        assert allowed


def test_messages_are_specific_and_short() -> None:
    with pytest.raises(ValueError) as caught:
        check_external_metadata({"x" * 300: "v"})
    assert "'xxxxxxxxxxxxxxxxxxxx…' is 300 characters long; at most 50" in str(caught.value)
    with pytest.raises(ValueError, match="value of 'loanId' must be a string, not a number"):
        check_external_metadata({"loanId": 42})
    with pytest.raises(ValueError, match="must be an object of strings, not an array"):
        check_external_metadata(["a"])  # type: ignore[arg-type]
