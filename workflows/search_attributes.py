"""The typed search attributes that make onboardings listable by stage, status and time in stage.

Register them on a production cluster with::

    temporal operator search-attribute create --name OnboardingStage --type Keyword
    temporal operator search-attribute create --name OnboardingStatus --type Keyword
    temporal operator search-attribute create --name OnboardingStageEnteredAt --type Datetime
"""

from __future__ import annotations

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

from onboarding.core.selection import (
    STAGE_ATTRIBUTE,
    STAGE_ENTERED_ATTRIBUTE,
    STATUS_ATTRIBUTE,
)

STAGE = SearchAttributeKey.for_keyword(STAGE_ATTRIBUTE)
STATUS = SearchAttributeKey.for_keyword(STATUS_ATTRIBUTE)
# When the onboarding entered its current stage: "waiting longer than" is a range query on it.
STAGE_ENTERED_AT = SearchAttributeKey.for_datetime(STAGE_ENTERED_ATTRIBUTE)
ALL = (STAGE, STATUS, STAGE_ENTERED_AT)

# The names Temporal's CLI (``--search-attribute NAME=TYPE``) gives each indexed type.
CLI_TYPE_NAMES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
}
