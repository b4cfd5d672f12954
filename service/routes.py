"""The URL table: every route of ``service/api_routes.py``, answered by its view."""

from __future__ import annotations

from aiohttp import web

from service.api_routes import ROUTES
from service.handlers import Views
from service.list_handlers import ListViews
from service.model_handlers import ModelViews
from service.report_handlers import ReportViews


def setup_routes(
    app: web.Application,
    views: Views,
    reports: ReportViews,
    models: ModelViews,
    lists: ListViews,
) -> None:
    owners = {"api": views, "reports": reports, "models": models, "lists": lists}
    for route in ROUTES:
        handler = getattr(owners[route.views], route.handler)
        if route.method == "GET":
            app.router.add_get(route.path, handler)  # and HEAD, as aiohttp adds it
        else:
            app.router.add_route(route.method, route.path, handler)
