"""The event catalogue covers Smile's spec and the widget, and the docs table matches it."""

from __future__ import annotations

import re
from pathlib import Path

from onboarding.core.catalogue import WEBHOOK_TYPES, WIDGET_CALLBACKS, render_markdown_table
from tests.smile_samples import example_types, spec_event_types

DOCS = Path(__file__).parents[3] / "docs" / "events.md"


def test_every_webhook_type_in_the_spec_is_mapped() -> None:
    spec = set(spec_event_types()) - {"ALL_EVENTS"}
    assert len(spec) >= 37
    assert spec == set(WEBHOOK_TYPES)


def test_every_documented_example_is_mapped() -> None:
    assert set(example_types()) <= WEBHOOK_TYPES


def test_every_widget_callback_is_mapped() -> None:
    assert {
        "onAccountCreated",
        "onAccountConnected",
        "onAccountRemoved",
        "onTokenExpired",
        "onClose",
        "onAccountError",
        "onUploadsCreated",
        "onUploadsRemoved",
        "onUIEvent",
    } == set(WIDGET_CALLBACKS)


def test_docs_table_is_the_catalogue() -> None:
    text = DOCS.read_text()
    match = re.search(r"<!-- BEGIN EVENT TABLE -->\n(.*?)<!-- END EVENT TABLE -->", text, re.S)
    assert match, "docs/events.md lost its table markers"
    assert match.group(1) == render_markdown_table()
