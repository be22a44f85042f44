"""``GET /metrics``: this API process's metrics in Prometheus's text format (or OpenMetrics,
when the scraper asks for it). Unauthenticated, like ``/healthz``: it carries counts, route
templates and the catalogue's event types, never a user id, a body or a secret. What it reads
from the spool and Temporal is kept a few seconds and read by one scrape at a time
(:data:`api.metrics.SCRAPE_TTL`), so scraping it often, or many times at once, costs them no
more."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import choose_encoder

from api.metrics import ApiMetrics

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry: ApiMetrics = request.app.state.metrics
    await registry.refresh(getattr(request.app.state, "onboardings", None))
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(registry.registry), headers={"Content-Type": content_type})
