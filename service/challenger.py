"""Choosing the shadow challenger: the ``challenger`` file beside ``champion`` in a
directory of model versions, its verified load, and following it in every process.

Setting a challenger loads it as a promotion does (every file against its SHA-256, the
explainer's tables built, run once), in a thread, then writes the ``challenger`` file
atomically and hands the loaded version to the shadow (``service/shadow.py``). Every
process sharing the directory reads the file at each poll of its champion file
(``RISKSCORE_MODEL_POLL_S``) and loads what it names the same way, so all of them shadow
the same version within that interval. The champion cannot also be the challenger, and
promoting the challenger leaves the slot empty (the file removed).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from models.errors import ArtifactError
from models.versions import CHALLENGER_FILE, ModelDirectory, ModelVersion
from service.errors import NotFound, ServiceError
from service.model_promotion import load_version, warm
from service.settings import Settings
from service.shadow import LoadedChallenger, Shadow

if TYPE_CHECKING:
    from service.scorer import Scorer

log = logging.getLogger(__name__)


class ChampionNotChallenger(ServiceError):
    """The version asked for is the champion: it cannot shadow itself."""

    status = 409
    type = "champion_not_challenger"


class ChallengerSlot:
    """The challenger of one process: set, cleared, and followed from the shared file."""

    def __init__(
        self, scorer: Scorer, directory: ModelDirectory, settings: Settings, shadow: Shadow
    ) -> None:
        self._scorer = scorer
        self.directory = directory
        # The challenger's second stage is not run (service/shadow.py): load it without.
        self._settings = settings.model_copy(update={"sequence": "off"})
        self.shadow = shadow
        self._lock = asyncio.Lock()
        self._failed: str | None = None  # a file's version that failed to load here

    @property
    def version(self) -> ModelVersion | None:
        loaded = self.shadow.challenger
        return None if loaded is None else loaded.version

    def describe(self) -> dict[str, Any] | None:
        """``GET /models``'s ``challenger``: the version and its shadow's counters."""
        version = self.version
        if version is None:
            return None
        return {**version.describe(), "shadow": self.shadow.stats()}

    def load_at_start(self) -> None:
        """Shadow the version the ``challenger`` file names, if any (blocking, at start-up).
        One that fails its checks is logged and not shadowed: the champion still serves."""
        if not self.directory.versioned:
            return
        try:
            pointed = self.directory.read_pointer(CHALLENGER_FILE)
            if pointed is None or pointed == self._scorer.model_version:
                return
            version = self.directory.find(pointed)
            if version is None:
                raise ArtifactError(f"the challenger file names {pointed!r}, not a version")
            self.shadow.install(self._load(version))
        except Exception as exc:
            log.error("no shadow challenger: %s", exc)
            return
        log.info("challenger %s (%s) scores in the shadow", version.version, version.name)

    async def challenge(self, key: str) -> ModelVersion:
        """Shadow the version named ``key`` (model version or directory): :class:`NotFound`,
        :class:`ChampionNotChallenger` (409) or :class:`ArtifactError` when it cannot be."""
        if not self.directory.versioned:
            raise ArtifactError(
                f"{self.directory.root.name} is a single artifact, not a directory of "
                "versions: there is no other version to shadow"
            )
        version = await asyncio.to_thread(self.directory.find, key)
        if version is None:
            raise NotFound(f"no model version {key!r} in {self.directory.root.name}")
        async with self._lock:
            await self._set(version, persist=True)
        return version

    async def clear(self, persist: bool = True) -> None:
        """Switch the shadow off (and, with ``persist``, remove the file: every process)."""
        async with self._lock:
            if persist and self.directory.versioned:
                await asyncio.to_thread(self.directory.write_pointer, None, CHALLENGER_FILE)
            if self.shadow.challenger is not None:
                log.info("challenger %s switched off", self.shadow.challenger.version.version)
            self.shadow.install(None)

    async def promoted(self, version: ModelVersion, persist: bool) -> None:
        """The champion changed: a challenger that became champion leaves the slot."""
        current = self.version
        if current is not None and current.version == version.version:
            await self.clear(persist)

    async def follow(self) -> None:
        """Shadow what the ``challenger`` file names (nothing without one)."""
        if not self.directory.versioned:
            return
        async with self._lock:
            pointed = await asyncio.to_thread(self.directory.read_pointer, CHALLENGER_FILE)
            champion = self._scorer.model_version
            if pointed is None or pointed == champion:
                # The champion named too: a promotion of the challenger is under way.
                if self.shadow.challenger is not None:
                    self.shadow.install(None)
                return
            current = self.version
            if current is not None and current.version == pointed:
                return
            if self._failed == pointed:
                return  # a version that failed its checks here is not loaded at every poll
            try:
                version = await asyncio.to_thread(self.directory.find, pointed)
                if version is None:
                    raise ArtifactError(f"the challenger file names {pointed!r}, not a version")
                await self._set(version, persist=False)
            except ArtifactError:
                self._failed = pointed
                raise

    async def _set(self, version: ModelVersion, persist: bool) -> None:
        """Load, persist, install; the caller holds the lock."""
        if version.version == self._scorer.model_version:
            raise ChampionNotChallenger(
                f"model version {version.version} is the champion; promote another version "
                "first, or choose another challenger"
            )
        current = self.version
        if current is not None and current.version == version.version:
            if persist:
                await asyncio.to_thread(
                    self.directory.write_pointer, version.version, CHALLENGER_FILE
                )
            return
        try:
            loaded = await asyncio.to_thread(self._load, version)
        except ArtifactError:
            raise
        except Exception as exc:
            raise ArtifactError(
                f"model version {version.version} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        if persist:
            await asyncio.to_thread(self.directory.write_pointer, version.version, CHALLENGER_FILE)
        self._failed = None
        self.shadow.install(loaded)
        log.info("challenger %s (%s) scores in the shadow", version.version, version.name)

    def _load(self, version: ModelVersion) -> LoadedChallenger:
        features = self._scorer.engine.feature_names
        loaded = load_version(version, self._settings, None, features)
        bundle = self._scorer.prepare(loaded.model, None)
        warm(bundle, len(features))
        return LoadedChallenger(version, bundle)
