"""The ``ApplicationError`` types that cross from the workflows to the service layer: both sides
name them from here, so a failure is recognised by its type, never by its message."""

ONBOARDING_ENDED = "OnboardingEnded"  # an update refused: the onboarding has ended
SMILE_CALL_FAILED = "SmileCallFailed"  # Smile refused, or kept failing past the retries
