"""The ``onboarding`` command line: may import anything; nothing imports it."""
