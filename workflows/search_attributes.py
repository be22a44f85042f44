"""The typed search attributes that make onboardings listable by stage and status.

Register them on a production cluster with::

    temporal operator search-attribute create --name OnboardingStage --type Keyword
    temporal operator search-attribute create --name OnboardingStatus --type Keyword
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

STAGE = SearchAttributeKey.for_keyword("OnboardingStage")
STATUS = SearchAttributeKey.for_keyword("OnboardingStatus")
ALL = (STAGE, STATUS)
