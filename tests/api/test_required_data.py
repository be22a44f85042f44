"""``requiredData`` through the real app: Smile's datapoint names in any case, normalised once in
the service layer, and an unknown name refused before anything is created at Smile."""

from __future__ import annotations

import httpx

from onboarding.core.datapoints import DATAPOINTS
from tests.conftest import Standin


async def test_smiles_datapoint_names_are_accepted_in_any_case(
    api: httpx.AsyncClient, admin: dict[str, str], shared_standin: Standin
) -> None:
    body = {"requiredData": ["IDENTITIES", "employments", "Incomes", "INCOMES"]}
    response = await api.post("/onboardings", headers=admin, json=body)
    assert response.status_code == 201, response.text
    started = response.json()
    assert started["onboarding"]["requiredData"] == ["identity", "employments", "incomes"]
    view = (await api.get(f"/onboardings/{started['userId']}", headers=admin)).json()
    assert view["requiredData"] == ["identity", "employments", "incomes"]


async def test_an_unknown_name_is_400_listing_the_valid_ones_and_calls_no_smile(
    api: httpx.AsyncClient, admin: dict[str, str], shared_standin: Standin
) -> None:
    users_before = len(shared_standin.state.users)
    response = await api.post(
        "/onboardings", headers=admin, json={"requiredData": ["INCOMES", "PAYSLIPS"]}
    )
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert detail.startswith("requiredData: unknown data type 'PAYSLIPS'")
    assert all(name in detail for name in DATAPOINTS.values())
    assert len(shared_standin.state.users) == users_before
