"""``requiredData`` under any of Smile's spellings becomes the facts' keys, once, in the core."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onboarding.core.catalogue import CATALOGUE, Effect
from onboarding.core.datapoints import DATAPOINTS, WEBHOOK_PREFIXES, normalise_required_data

SPELLINGS = [
    *((name, key) for key, name in DATAPOINTS.items()),
    *((prefix, key) for prefix, key in WEBHOOK_PREFIXES.items()),
    *((key, key) for key in DATAPOINTS),
]


def any_case(text: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda upper: "".join(
            c.upper() if u else c.lower() for c, u in zip(text, upper, strict=True)
        )
    )


@given(st.sampled_from(SPELLINGS).flatmap(lambda sk: st.tuples(any_case(sk[0]), st.just(sk[1]))))
def test_every_spelling_in_any_case_names_the_same_type(spelled: tuple[str, str]) -> None:
    name, key = spelled
    assert normalise_required_data([f" {name} "]) == [key]


@given(st.lists(st.sampled_from(SPELLINGS), max_size=8))
def test_order_is_kept_and_repeats_dropped(names: list[tuple[str, str]]) -> None:
    keys = normalise_required_data(name for name, _ in names)
    assert keys == list(dict.fromkeys(key for _, key in names))


def test_smiles_datapoint_names_as_the_spec_spells_them() -> None:
    assert normalise_required_data(["IDENTITIES", "EMPLOYMENTS", "INCOMES"]) == [
        "identity",
        "employments",
        "incomes",
    ]
    assert normalise_required_data(["ratings", "Insights"]) == ["rating", "insight"]


@pytest.mark.parametrize("name", ["salary", "IDENTITIESS", ""])
def test_an_unknown_name_is_refused_listing_the_valid_ones(name: str) -> None:
    with pytest.raises(ValueError, match="valid") as raised:
        normalise_required_data(["incomes", name])
    assert all(datapoint in str(raised.value) for datapoint in DATAPOINTS.values())
    if name:
        assert repr(name) in str(raised.value)


def test_every_data_webhook_files_under_a_key_that_required_data_can_name() -> None:
    data_keys = {s.arg for s in CATALOGUE.values() if s.effect is Effect.DATA}
    assert data_keys == set(DATAPOINTS)
