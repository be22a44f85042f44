"""What the namespace must hold before a worker runs: the search attributes this version
publishes. Checked at the worker's start, so an upgrade that forgot to register one stops
there, saying how to register it, instead of failing every new onboarding's start."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError

from workflows import search_attributes


async def missing_search_attributes(client: Client) -> list[str] | None:
    """The ``temporal operator search-attribute create`` commands still to run; an empty list
    when all are registered with the right type; None when the namespace cannot be asked (no
    permission for the operator API, as on some hosted setups: then nothing is known)."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
    except RPCError:
        return None
    registered = dict(listed.custom_attributes)
    commands = []
    for key in search_attributes.ALL:
        if registered.get(key.name) != IndexedValueType.ValueType(key.indexed_value_type):
            kind = search_attributes.CLI_TYPE_NAMES[key.indexed_value_type]
            commands.append(
                f"temporal operator search-attribute create --name {key.name} --type {kind}"
            )
    return commands
