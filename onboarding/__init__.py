"""The orchestrator's own packages: ``core`` (pure), ``service`` (talks to Temporal), ``tooling``
(local dev tools) and ``cli``. Imports run cli/tooling → service → workflows → core."""
