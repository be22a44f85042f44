"""Activities: every piece of I/O the onboarding workflow needs, run by the worker with retries."""
