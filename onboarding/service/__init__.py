"""The service layer that talks to Temporal: imports ``onboarding.core``, workflows, activities."""
