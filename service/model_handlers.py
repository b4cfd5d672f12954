"""HTTP views of model versions: list them, promote one (``service/model_promotion.py``),
choose the shadow challenger (``service/challenger.py``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from aiohttp import web

from models.errors import ArtifactError
from models.versions import ChampionFileError
from service.api_models import ModelsResponse
from service.challenger import ChallengerSlot
from service.errors import Forbidden, NotReady, ServiceError
from service.handlers import JSON_TYPE
from service.model_promotion import ModelPromotion
from service.scorer import Scorer


class InvalidArtifact(ServiceError):
    """A model version failed its checks when loaded; the champion is unchanged."""

    status = 422
    type = "invalid_artifact"


class ChampionFileUnwritable(ServiceError):
    """The version loaded, but the champion file could not be written; nothing changed."""

    status = 503
    type = "champion_file_unwritable"


class ModelViews:
    """``GET /models`` and ``POST /models/{version}/promote``."""

    def __init__(self, scorer: Scorer, admin_keys_set: bool) -> None:
        self._scorer = scorer
        # Without admin keys no key is asked for at all (the auth middleware is installed
        # only with RISKSCORE_API_KEYS): anyone reaching the port could swap the model.
        self._admin_keys_set = admin_keys_set

    def _promotion(self) -> ModelPromotion:
        promotion = self._scorer.promotion
        if promotion is None:
            raise NotReady("this process does not manage model versions")
        return promotion

    async def models(self, request: web.Request) -> web.Response:
        promotion = self._promotion()
        described = await asyncio.to_thread(promotion.describe)
        return _answer(described)

    def _admin(self, what: str) -> None:
        if not self._admin_keys_set:
            raise Forbidden(
                f"{what} needs an admin key: set RISKSCORE_ADMIN_API_KEYS "
                "(and RISKSCORE_API_KEYS) to change model versions"
            )

    def _challenger(self) -> tuple[ModelPromotion, ChallengerSlot]:
        promotion = self._promotion()
        if promotion.challenger is None:
            raise NotReady("this process has no shadow challenger slot")
        return promotion, promotion.challenger

    async def challenge(self, request: web.Request) -> web.Response:
        self._admin("choosing a challenger")
        promotion, slot = self._challenger()
        with _refusals("challenger not set"):
            await slot.challenge(request.match_info["version"])
        return _answer(await asyncio.to_thread(promotion.describe))

    async def stop_challenge(self, request: web.Request) -> web.Response:
        self._admin("switching the challenger off")
        promotion, slot = self._challenger()
        with _refusals("challenger not switched off"):
            await slot.clear()
        return _answer(await asyncio.to_thread(promotion.describe))

    async def promote(self, request: web.Request) -> web.Response:
        self._admin("promotion")
        promotion = self._promotion()
        with _refusals("model version not promoted"):
            await promotion.promote(request.match_info["version"])
        return _answer(await asyncio.to_thread(promotion.describe))


@contextlib.contextmanager
def _refusals(what: str) -> Iterator[None]:
    """A version that fails its checks (422) or a pointer file not written (503)."""
    try:
        yield
    except ChampionFileError as exc:
        raise ChampionFileUnwritable(f"{what}: {exc}") from None
    except ArtifactError as exc:
        raise InvalidArtifact(f"{what}: {exc}") from None


def _answer(described: dict[str, object]) -> web.Response:
    # Nulls kept: "challenger": null says there is none (the interface others rely on).
    body = ModelsResponse.model_validate(described).model_dump_json()
    return web.Response(body=body, content_type=JSON_TYPE)
