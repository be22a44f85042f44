"""The operator console: server-rendered pages under ``/console`` (Jinja2, with htmx vendored
under ``static/`` for a little progressive enhancement; nothing loaded from anywhere else).

``create_app`` includes :data:`router` and mounts :func:`static_files` at :data:`STATIC_PATH`."""

from api.console.routes import router
from api.console.web import STATIC_PATH, static_files

__all__ = ["STATIC_PATH", "router", "static_files"]
