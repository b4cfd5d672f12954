"""The URL table, in one place."""

from __future__ import annotations

from aiohttp import web

from service.handlers import Views


def setup_routes(app: web.Application, views: Views) -> None:
    app.router.add_post("/score", views.score)
    app.router.add_post("/score/batch", views.score_batch)
    app.router.add_get("/decisions/{transaction_id}", views.decision)
    app.router.add_post("/labels", views.labels)
    app.router.add_get("/healthz", views.healthz)
    app.router.add_get("/readyz", views.readyz)
    app.router.add_get("/metrics", views.metrics)
    app.router.add_get("/openapi.json", views.openapi)
