"""Model versions while serving: which one is champion, promotion, and following the
champion that another process promoted.

A promotion loads the version completely first — every file checked against its SHA-256,
the LightGBM text parsed, the explainer's tables built, the sequence artifact paired and
everything run once — in a thread, while the old version keeps serving. Then the champion
pointer is written (atomically) and the new bundle installed in one step on the event
loop: a payment takes the bundle once, at its start, so each decision is made by one
version entirely, and no request waits for the swap. Rollback is promoting the previous
version.

Every process serving from the same model directory reads the pointer every
``RISKSCORE_MODEL_POLL_S`` seconds and promotes what it names, the same way: so with
``serve --workers N`` or several consumers, all of them serve the promoted version within
that interval of the promotion.

A fast model whose version has no sequence artifact fitted for it is served with the
second stage off (the band and the combination were fitted against one fast model's
scores; pairing them with another's would be wrong): a warning says so and the gauge
``riskscore_second_stage_unpaired`` is 1 until a version with its own stage is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from features.sequence import SequenceSpec
from models.artifact_paths import default_sequence_artifact_dir
from models.artifacts import load_manifest_as
from models.cascade import Cascade, FaultInjection
from models.errors import ArtifactError
from models.fast import FastModel
from models.sequence import SequenceModel
from models.sequence_artifacts import SequenceManifest
from models.versions import POINTER_FILE, ModelDirectory, ModelVersion
from service.errors import NotFound
from service.settings import Settings

if TYPE_CHECKING:
    from service.challenger import ChallengerSlot
    from service.fast_path import ModelBundle
    from service.scorer import Scorer

log = logging.getLogger(__name__)

# Longest a payment can still be in its second stage after its bundle was replaced (the
# largest X-Deadline-Ms accepted): the replaced stage's thread is stopped after that.
RETIRE_AFTER_S = 60.0
# A writing of the champion file that failed is tried again after this long (the load
# costs ~0.7 s of CPU: not at every poll), in case what failed was passing.
RETRY_FAILED_S = 30.0
# The GIL's turn length while a version loads in a thread (Python's default: 5 ms).
LOADING_SWITCH_INTERVAL_S = 0.0005


@dataclass(frozen=True)
class LoadedVersion:
    """A version loaded and checked: its fast model, its paired stage or why it has none."""

    version: ModelVersion
    model: FastModel
    cascade: Cascade | None
    unpaired: str | None  # why the second stage is off for it, when the stage is on


def cascade_for(settings: Settings, model: SequenceModel) -> Cascade:
    """The second stage around a loaded student, as the settings configure it."""
    stage = settings.second_stage
    return Cascade(
        model,
        reserve_ms=stage.reserve_ms,
        faults=FaultInjection(delay_ms=stage.fault_delay_ms, error_rate=stage.fault_error_rate),
    )


def spec_of(manifest: SequenceManifest) -> SequenceSpec:
    return SequenceSpec(manifest.length, tuple(manifest.feature_names), manifest.max_age_ms)


def load_version(
    version: ModelVersion,
    settings: Settings,
    spec: SequenceSpec | None,
    features: Sequence[str] | None = None,
) -> LoadedVersion:
    """Verify and load one version (blocking); :class:`ArtifactError` if its fast model is
    unusable, or reads other inputs than the ``features`` the process computes. Its
    sequence artifact is paired only if fitted for this very fast model and shaped like the
    sequences kept (``spec``); otherwise the stage is off for it."""
    scoring = settings.scoring
    model = FastModel.load(
        version.fast_dir, num_threads=scoring.predict_threads, predictor=scoring.predictor
    )
    if features is not None and list(model.feature_names) != list(features):
        # Installed, it would answer every payment with an error (its input width differs,
        # or worse, the same width in another order would score silently wrong).
        raise ArtifactError(
            f"model version {model.version} reads the features {model.feature_names}, "
            f"this process computes {list(features)}: restart with its feature definitions "
            "to serve it"
        )
    if settings.sequence == "off":
        return LoadedVersion(version, model, None, None)
    if version.sequence_dir is None:
        return LoadedVersion(
            version, model, None, f"version {version.name} has no sequence artifact"
        )
    try:
        student = SequenceModel.load(version.sequence_dir, model.version)
    except ArtifactError as exc:
        return LoadedVersion(version, model, None, str(exc))
    if spec is not None and student.spec != spec:
        return LoadedVersion(
            version,
            model,
            None,
            f"the sequence model {student.version} reads sequences shaped {student.spec}, "
            f"the process keeps {spec}: restart to serve it",
        )
    return LoadedVersion(version, model, cascade_for(settings, student), None)


def kept_spec(directory: ModelDirectory, loaded: LoadedVersion) -> SequenceSpec | None:
    """The shape of the sequences to keep when the second stage is on: the champion's
    stage's, else the first version's that has one, else the shipped stage's."""
    if loaded.cascade is not None:
        return loaded.cascade.model.spec
    for version in directory.versions():
        try:
            manifest = version.sequence_manifest()
        except ArtifactError:
            continue
        if manifest is not None:
            return spec_of(manifest)
    return spec_of(load_manifest_as(default_sequence_artifact_dir(), SequenceManifest))


def warm(bundle: ModelBundle, width: int) -> None:
    """Run the bundle once on rows of the ``width`` the process computes (as
    ``compile_hot_path`` does at start-up), so the first payment it scores pays no lazy
    set-up, and a model that cannot take such rows fails here, not on every payment."""
    x = np.zeros((1, width))
    for rows in (x, np.repeat(x, 4, axis=0)):
        bundle.model.predict_raw(rows)
        bundle.coder.code_many(rows, bundle.explainer.contributions(rows))
    if bundle.cascade is not None:
        spec = bundle.cascade.model.spec
        sequence = np.zeros((spec.length, spec.width))
        sequence[-2:, -1] = 1.0
        bundle.cascade.model.logits(sequence[None])
        bundle.cascade.model.logits(np.stack([sequence, sequence]))


# Loads that overlap (a promotion here and a follow, two processes' tests in one) share
# the short interval: the first to start saves the process's and sets it, the last to end
# restores it. Without the count, the second load's exit would restore the short one.
_loading_lock = threading.Lock()
_loading = 0
_saved_interval = 0.0


@contextlib.contextmanager
def _short_gil_turns() -> Iterator[None]:
    """Hand the GIL back to the event loop sooner while a version loads beside it.

    Loading holds the GIL most of its ~0.7 s (the forest read in Python, the explainer's
    tables in compiled code that keeps it). Each time the event loop gives the GIL up for
    a socket call, it then waits for the loading thread's turn to end: 5 ms by default,
    several times per request. Shorter turns during the load keep that wait short; the
    interval is the process's, so it is restored once no load is running.
    """
    global _loading, _saved_interval
    with _loading_lock:
        if _loading == 0:
            _saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(LOADING_SWITCH_INTERVAL_S)
        _loading += 1
    try:
        yield
    finally:
        with _loading_lock:
            _loading -= 1
            if _loading == 0:
                sys.setswitchinterval(_saved_interval)


class ModelPromotion:
    """The champion of one process, its promotion, and following the shared pointer."""

    def __init__(
        self,
        scorer: Scorer,
        directory: ModelDirectory,
        champion: LoadedVersion,
        settings: Settings,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._scorer = scorer
        self.directory = directory
        self.champion = champion.version
        self._settings = settings
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        # The champion file's writing that failed to load here, and when it failed.
        self._failed: tuple[tuple[str, int], float] | None = None
        self.retry_failed_s = RETRY_FAILED_S
        registry = registry or CollectorRegistry()
        self._promotions = Counter(
            "riskscore_model_promotions",
            "Model versions installed by this process (outcome: promoted, or refused when "
            "the version failed its checks), by promotion here or by following the pointer.",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("promoted", "refused"):
            self._promotions.labels(outcome)  # on /metrics at 0 from the start
        self._unpaired = Gauge(
            "riskscore_second_stage_unpaired",
            "1 while the served fast model has no sequence artifact fitted for it, so the "
            "second stage is off; 0 otherwise.",
            registry=registry,
        )
        self._served = Gauge(
            "riskscore_model_served",
            "1 for the fast model version this process serves.",
            ["version"],
            registry=registry,
        )
        self._mismatch = Gauge(
            "riskscore_model_pointer_mismatch",
            "1 while the version this process serves differs from the one its champion file "
            "names (a following load failed or is in progress); 0 otherwise.",
            registry=registry,
        )
        # The shadow challenger's slot (set by the composition root with a directory of
        # versions): told of promotions, followed at each poll.
        self.challenger: ChallengerSlot | None = None
        self._polls = Counter(
            "riskscore_model_pointer_polls",
            "Times this process read its champion file to follow it.",
            registry=registry,
        )
        self._note(champion)

    def describe(self) -> dict[str, Any]:
        """``GET /models``: the champion, the challenger (none yet) and every version."""
        versions = self.directory.versions()
        champion = next((v for v in versions if v.version == self.champion.version), self.champion)
        try:
            pointed = self.directory.read_pointer()
        except ArtifactError as exc:
            pointed = f"unreadable: {exc}"
        return {
            "champion": champion.describe(),
            # What every process sharing the directory should serve: it differs from the
            # champion served here while this process has not (yet) followed it.
            "champion_file": pointed,
            "challenger": None if self.challenger is None else self.challenger.describe(),
            "versions": [
                {**v.describe(), "champion": v.version == champion.version} for v in versions
            ],
        }

    async def promote(self, key: str, persist: bool = True) -> ModelVersion:
        """Make the version named ``key`` (model version or directory) the champion.

        :class:`NotFound` if there is no such version; :class:`ArtifactError` if it fails
        its checks (the old version keeps serving). With ``persist``, the pointer is
        written before the swap, so that no other process lags behind a failed write.
        """
        version = await asyncio.to_thread(self.directory.find, key)
        if version is None:
            raise NotFound(f"no model version {key!r} in {self.directory.root.name}")
        async with self._lock:
            return await self._promote(version, persist)

    async def _promote(self, version: ModelVersion, persist: bool) -> ModelVersion:
        """Load, persist, swap; the caller holds the lock."""
        if version.version == self.champion.version and version.fast_dir == self.champion.fast_dir:
            if persist and self.directory.versioned:
                await asyncio.to_thread(self.directory.write_pointer, version.version)
            return version
        try:
            loaded, bundle = await asyncio.to_thread(self._load, version)
        except ArtifactError:
            self._promotions.labels("refused").inc()
            raise
        except Exception as exc:
            # Whatever else a load raises (LightGBM, NumPy, ONNX Runtime) says the same: this
            # version cannot be served; the champion stays.
            self._promotions.labels("refused").inc()
            raise ArtifactError(
                f"model version {version.version} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        if persist:
            await asyncio.to_thread(self.directory.write_pointer, version.version)
        old = self._scorer.install(bundle)
        previous = self.champion
        self.champion = version
        self._promotions.labels("promoted").inc()
        self._mismatch.set(0)  # persisted here, or followed from the file
        self._served.clear()
        self._note(loaded)
        log.info(
            "model version %s (%s) promoted, replacing %s",
            version.version,
            version.name,
            previous.version,
        )
        if self.challenger is not None:
            await self.challenger.promoted(version, persist)
        if old.cascade is not None and old.cascade is not bundle.cascade:
            asyncio.get_running_loop().call_later(RETIRE_AFTER_S, old.cascade.close)
        return version

    def _load(self, version: ModelVersion) -> tuple[LoadedVersion, ModelBundle]:
        with _short_gil_turns():
            features = self._scorer.engine.feature_names
            loaded = load_version(version, self._settings, self._scorer.sequence_spec, features)
            bundle = self._scorer.prepare(loaded.model, loaded.cascade)
            warm(bundle, len(features))
        return loaded, bundle

    def _note(self, loaded: LoadedVersion) -> None:
        self._served.labels(loaded.version.version).set(1)
        self._unpaired.set(1 if loaded.unpaired is not None else 0)
        if loaded.unpaired is not None:
            log.warning(
                "second stage off for fast model %s: %s", loaded.version.version, loaded.unpaired
            )

    # ------------------------------------------------------------ following

    def start_polling(self, interval_s: float) -> None:
        """Follow the champion pointer every ``interval_s`` (versioned directories only)."""
        if interval_s > 0 and self.directory.versioned and self._poller is None:
            self._poller = asyncio.create_task(self._poll(interval_s))

    async def stop_polling(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def follow(self) -> None:
        """Promote what the pointer names, if this process serves another version.

        The pointer is read under the lock: read before a promotion in this process and
        acted on after it, it would install the version that promotion replaced.
        """
        async with self._lock:
            self._polls.inc()
            pointed, stamp = await asyncio.to_thread(self._read_pointer)
            if pointed is None or pointed == self.champion.version:
                self._mismatch.set(0)
                return
            self._mismatch.set(1)
            now = time.monotonic()
            failed = self._failed
            if failed is not None and failed[0] == stamp and now - failed[1] < self.retry_failed_s:
                return
            try:
                try:
                    version = await asyncio.to_thread(self.directory.find, pointed)
                    if version is None:
                        raise ArtifactError(f"the champion file names {pointed!r}, not a version")
                except ArtifactError:
                    self._promotions.labels("refused").inc()  # as a version failing its checks
                    raise
                await self._promote(version, persist=False)
            except ArtifactError:
                # Tried again after RETRY_FAILED_S, or at once when the file changes: a load
                # costs ~0.7 s of CPU, which every process would otherwise spend at every
                # poll; never retrying would leave it behind for good after a passing fault.
                self._failed = (stamp, now) if stamp else None
                raise

    def _read_pointer(self) -> tuple[str | None, tuple[str, int] | None]:
        """The pointer and what identifies this writing of it (its text and mtime)."""
        pointed = self.directory.read_pointer()
        if pointed is None:
            return None, None
        try:
            mtime = (self.directory.root / POINTER_FILE).stat().st_mtime_ns
        except FileNotFoundError:
            return None, None
        return pointed, (pointed, mtime)

    async def _poll(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.follow()
                if self.challenger is not None:
                    await self.challenger.follow()
            except Exception as exc:
                # The process keeps serving its version; the next poll tries again.
                log.error("cannot follow the model pointer: %s", exc)


def served_artifact_dir(settings: Settings, scorer: Scorer) -> Callable[[], Path]:
    """The fast-model artifact served now, whose manifest the reports and drift gauges
    compare with (with a directory of versions: the champion's, as promotions change it)."""
    promotion = scorer.promotion
    if promotion is None:
        return lambda: settings.scoring.artifact_dir
    return lambda: promotion.champion.fast_dir
