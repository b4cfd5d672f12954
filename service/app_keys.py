"""Typed keys of what the application holds (a module of its own: handlers read them too)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from service.prometheus_metrics import ScoringMetrics
from service.scorer import Scorer
from service.settings import Settings
from service.stream_runner import StreamRunner

SCORER = web.AppKey("scorer", Scorer)
SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", ScoringMetrics)
WARM_START = web.AppKey("warm_start", asyncio.Task[int])
STREAM = web.AppKey("stream", StreamRunner)
