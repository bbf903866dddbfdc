"""`GET /metrics`: Prometheus text (even.metrics), for anyone, like /healthz."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from even.metrics import CONTENT_TYPE, Metrics

router = APIRouter(tags=["meta"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
def metrics(request: Request) -> Response:
    """Counters from every worker, and gauges read now (audit head, checkpoint age, ...)."""
    source: Metrics = request.app.state.metrics
    return Response(source.exposition(), media_type=CONTENT_TYPE)
