"""The pure core (models, catalogue, state machine, lifecycle): imports only ``onboarding.core``."""
