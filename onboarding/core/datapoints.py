"""Smile's data types under their several spellings, normalised once for the whole service.

Smile names a type three ways: its datapoints (``RefDatapoint`` in the OpenAPI spec:
``IDENTITIES``, ``INCOMES``, …), its webhooks (``IDENTITY_ADDED``, ``INCOMES_ADDED``, …) and,
inside this service, the lowercase key under which the facts keep it (``identity``,
``incomes``, …). ``requiredData`` may use any of them, in any case."""

from __future__ import annotations

from collections.abc import Iterable

# Webhook prefix (``<PREFIX>_ADDED``) -> the facts' key.
WEBHOOK_PREFIXES: dict[str, str] = {
    "IDENTITY": "identity",
    "RATING": "rating",
    "TRANSACTIONS": "transactions",
    "DOCUMENTS": "documents",
    "EMPLOYMENTS": "employments",
    "INCOMES": "incomes",
    "CONTRIBUTIONS": "contributions",
    "EINCOMES": "eincomes",
    "LIABILITIES": "liabilities",
    "INSIGHT": "insight",
    "LINK": "link",
}

# The facts' key -> Smile's datapoint name, as RefDatapoint spells it.
DATAPOINTS: dict[str, str] = {
    "identity": "IDENTITIES",
    "rating": "RATINGS",
    "transactions": "TRANSACTIONS",
    "documents": "DOCUMENTS",
    "employments": "EMPLOYMENTS",
    "incomes": "INCOMES",
    "contributions": "CONTRIBUTIONS",
    "eincomes": "EINCOMES",
    "liabilities": "LIABILITIES",
    "insight": "INSIGHTS",
    "link": "LINK",
}

# The facts' key -> the path of Smile's list endpoint for that data (``GET /<path>?userId=…``).
ENDPOINTS: dict[str, str] = {
    "identity": "identities",
    "rating": "ratings",
    "transactions": "transactions",
    "documents": "documents",
    "employments": "employments",
    "incomes": "incomes",
    "contributions": "contributions",
    "eincomes": "eincomes",
    "liabilities": "liabilities",
    "insight": "insights",
    "link": "links",
}

_SPELLINGS: dict[str, str] = {
    **{key: key for key in DATAPOINTS},
    **{name.lower(): key for key, name in DATAPOINTS.items()},
    **{prefix.lower(): key for prefix, key in WEBHOOK_PREFIXES.items()},
}


def data_type_for(name: str) -> str:
    """The facts' key for any spelling of a data type; ValueError listing the valid ones."""
    key = _SPELLINGS.get(name.strip().lower())
    if key is None:
        valid = ", ".join(DATAPOINTS.values())
        raise ValueError(
            f"unknown data type {name.strip()!r}; valid (any case): {valid}"
            if name.strip()
            else f"data type names must not be empty; valid (any case): {valid}"
        )
    return key


def normalise_required_data(names: Iterable[str]) -> list[str]:
    """``requiredData`` as the facts' keys, in the order given, without repeats."""
    keys: list[str] = []
    for name in names:
        key = data_type_for(name)
        if key not in keys:
            keys.append(key)
    return keys
