"""Core of the Smile onboarding orchestrator: models, the pure state machine, settings and the
composition root (Temporal connection, worker, dev server, CLI)."""
