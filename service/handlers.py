"""HTTP views: decode the request, call the scorer, encode the answer. No scoring logic here."""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from explain.decision import response_json
from features.card_numbers import contains_card_number, tokenised_fields
from features.schema import InvalidJson as JsonSyntaxError
from features.schema import Label, Transaction, decode_model, loads
from service.admission import AdmissionControl
from service.api_models import (
    BatchItemError,
    BatchRequest,
    DecisionDetail,
    ErrorBody,
    FieldError,
    Health,
    LabelBatchRequest,
    LabelBatchResponse,
    LabelResponse,
    Readiness,
)
from service.api_routes import DEADLINE_HEADER, EXPLAIN_HEADER, EXPLAIN_VALUES, MAX_DEADLINE_MS
from service.app_keys import STREAM
from service.card_number_guard import tokenised_header
from service.errors import (
    InvalidInput,
    InvalidJson,
    NotFound,
    NotReady,
    PayloadTooLarge,
    ServiceError,
    UnsupportedMediaType,
)
from service.loop_lag import LoopLag
from service.micro_batch import MicroBatcher
from service.openapi import openapi_document
from service.prometheus_metrics import CONTENT_TYPE, ScoringMetrics
from service.rate_limit import RateLimits
from service.scorer import Scorer, ScoreRequest
from service.settings import Settings

M = TypeVar("M", bound=BaseModel)

JSON_TYPE = "application/json"
REPLAYED_HEADER = "Idempotent-Replayed"


def json_response(model: BaseModel, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=model.model_dump_json(exclude_none=True), content_type=JSON_TYPE, headers=headers
    )


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw JSON body, or the error that says what is wrong with its framing."""
    if request.content_type != JSON_TYPE:
        raise UnsupportedMediaType(
            f"send the body as {JSON_TYPE} (got {request.content_type or 'no content type'})"
        )
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body of {request.content_length} bytes exceeds {limit} bytes")
    return await request.read()  # aiohttp enforces the limit on bodies without a length


async def read_json(request: web.Request, limit: int) -> Any:
    """The decoded JSON body, or the error that says what is wrong with it."""
    body = await read_body(request, limit)
    try:
        return loads(body)
    except JsonSyntaxError as exc:
        raise InvalidJson(f"body is {exc}") from None


def parse_transaction(
    data: object, prefix: str = "", context: dict[str, Any] | None = None
) -> Transaction:
    """Validate decoded JSON as a transaction; :class:`InvalidInput` names each bad field.
    ``context`` carries the card-number policy (``CardNumberPolicy.context()``)."""
    try:
        return Transaction.model_validate(data, context=context)
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc, prefix) from None


def decode_transaction(body: bytes, context: dict[str, Any] | None = None) -> Transaction:
    """A ``/score`` body as a transaction, straight from its bytes (see ``decode_model``)."""
    try:
        return decode_model(Transaction, body, context)
    except JsonSyntaxError as exc:
        raise InvalidJson(f"body is {exc}") from None
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None


def _full_explanation(request: web.Request) -> bool:
    """?explain= or X-Explain: 'reasons' (the default) or 'full'. A value that is given is
    checked even when empty (``explain=`` is not the default, as the schema's enum says)."""
    given = {
        name: values
        for name, values in (
            ("explain", request.query.getall("explain", [])),
            (EXPLAIN_HEADER, request.headers.getall(EXPLAIN_HEADER, [])),
        )
        if values
    }
    # Both are named "explain" in an error, as they always were (one choice, two ways).
    for values in given.values():
        name = "explain"
        if len(values) > 1:
            raise InvalidInput(
                f"{name} must be given once",
                [{"field": name, "message": f"given {len(values)} times"}],
            )
        if values[0] not in EXPLAIN_VALUES:
            raise InvalidInput(
                f"{name} must be 'reasons' or 'full'",
                [{"field": name, "message": f"expected 'reasons' or 'full', got {values[0]!r}"}],
            )
    # The query wins over the header (a URL is the more deliberate of the two).
    wanted = next(iter(given.values()), ["reasons"])[0]
    return wanted == "full"


def _budget_ms(request: web.Request) -> float | None:
    """The request's own latency budget (X-Deadline-Ms), or None for the default."""
    value = request.headers.get(DEADLINE_HEADER)
    if value is None:
        return None
    try:
        budget = float(value)
    except ValueError:
        budget = float("nan")
    if not 0.0 < budget <= MAX_DEADLINE_MS:  # also false for NaN
        raise InvalidInput(
            f"{DEADLINE_HEADER} must be milliseconds in (0, {MAX_DEADLINE_MS:.0f}]",
            [{"field": DEADLINE_HEADER, "message": f"got {value!r}"}],
        )
    return budget


def _item_error(index: int, item: object, error: ServiceError) -> bytes:
    return _item_error_model(index, item, error).model_dump_json(exclude_none=True).encode()


def _item_error_model(index: int, item: object, error: ServiceError) -> BatchItemError:
    """The error of one batch item, naming its id as sent (the validated id when there is
    one, e.g. a token); an id holding a card number is never echoed."""
    transaction_id = item.get("transaction_id") if isinstance(item, dict) else None
    if isinstance(item, BaseModel):
        transaction_id = getattr(item, "transaction_id", None)
    if isinstance(transaction_id, str) and contains_card_number(transaction_id):
        transaction_id = None
    return BatchItemError(
        index=index,
        transaction_id=transaction_id if isinstance(transaction_id, str) else None,
        error=ErrorBody(
            type=error.type,
            message=error.message,
            fields=[FieldError(**f) for f in error.fields] if error.fields else None,
        ),
    )


class Views:
    """The API's handlers; dependencies come in once, at construction."""

    def __init__(
        self,
        scorer: Scorer,
        settings: Settings,
        metrics: ScoringMetrics,
        batcher: MicroBatcher | None = None,
        admission: AdmissionControl | None = None,
    ) -> None:
        self._scorer = scorer
        self._settings = settings
        self._metrics = metrics
        self._batcher = batcher or MicroBatcher(scorer, settings.http.micro_batch_max)
        self.admission = admission or AdmissionControl(
            settings.second_stage.budget_ms,
            settings.admission.admission_service_ms,
            enabled=settings.admission.admission_control,
            rates=RateLimits(settings.admission.rates),
            on_shed=lambda reason: metrics.shed.labels(reason).inc(),
            loop_lag_ms=LoopLag().current_ms,
        )
        self._card_numbers = settings.card_numbers.card_number_policy()

    def _admit(
        self, request: web.Request, payments: int, received: float, budget: float | None
    ) -> None:
        """Refuse now (429) what could not be answered in time: before any scoring."""
        key = request.headers.get(self._settings.http.api_key_header)
        self.admission.admit(payments, received, budget, key)

    def _require_ready(self) -> None:
        if not self._scorer.warmed:
            raise NotReady("the feature state is still being rebuilt from the audit store")

    async def score(self, request: web.Request) -> web.Response:
        received = time.perf_counter()  # the budget counts from here
        full = _full_explanation(request)
        budget = _budget_ms(request)
        self._require_ready()
        # Weighed before the body is read or decoded: under overload a refusal must cost
        # far less than a decision, or refusing takes the time deciding needs.
        self._admit(request, 1, received, budget)
        try:
            body = await read_body(request, self._settings.http.max_body_bytes)
            context = self._card_numbers.context()
            tx = decode_transaction(body, context)
            scored = await self._batcher.submit(ScoreRequest(tx, received, budget))
        finally:
            self.admission.done(1)
        headers = tokenised_header(tokenised_fields(context)) or {}
        if scored.replayed:
            headers[REPLAYED_HEADER] = "true"
        return web.Response(
            body=response_json(scored.decision, full),
            content_type=JSON_TYPE,
            headers=headers or None,
        )

    async def score_batch(self, request: web.Request) -> web.Response:
        received = time.perf_counter()
        full = _full_explanation(request)
        budget = _budget_ms(request)
        body = await read_json(request, self._settings.http.max_body_bytes)
        batch = _validated(BatchRequest, body)
        limit = self._settings.http.max_batch_size
        if len(batch.transactions) > limit:
            raise PayloadTooLarge(
                f"batch of {len(batch.transactions)} transactions exceeds the limit of {limit}"
            )
        self._require_ready()
        results: list[bytes | None] = [None] * len(batch.transactions)
        valid: list[int] = []
        txs = []
        tokenised: list[str] = []
        for i, item in enumerate(batch.transactions):
            prefix = f"transactions.{i}."
            context = self._card_numbers.context()
            try:
                txs.append(parse_transaction(item, prefix, context))
                valid.append(i)
            except InvalidInput as exc:
                results[i] = _item_error(i, item, exc)
            tokenised += [prefix + name for name in tokenised_fields(context)]
        if txs:
            self._admit(request, len(txs), received, budget)
            try:
                outcomes = await self._scorer.score_batch(txs, received, budget)
            finally:
                self.admission.done(len(txs))
        else:
            outcomes = []
        for i, tx, outcome in zip(valid, txs, outcomes, strict=True):
            if isinstance(outcome, ServiceError):
                results[i] = _item_error(i, tx, outcome)
            else:
                results[i] = response_json(outcome.decision, full)
        # The items are encoded already (each decision by the one encoder of its view).
        body_bytes = b'{"results":[' + b",".join(r for r in results if r is not None) + b"]}"
        return web.Response(
            body=body_bytes, content_type=JSON_TYPE, headers=tokenised_header(tokenised)
        )

    async def decision(self, request: web.Request) -> web.Response:
        transaction_id = request.match_info["transaction_id"]
        # Reads of the audit file (and the second stage's attributions) off the event loop.
        record = await asyncio.to_thread(self._scorer.decision, transaction_id)
        if record is None:
            raise NotFound(f"no decision recorded for transaction {transaction_id!r}")
        labels = await asyncio.to_thread(self._scorer.store.labels, transaction_id)
        detail = DecisionDetail(**dict(record), labels=labels)
        # Every key, null where absent: the same shape as an item of GET /decisions.
        return web.Response(body=detail.model_dump_json(), content_type=JSON_TYPE)

    async def labels(self, request: web.Request) -> web.Response:
        body = await read_json(request, self._settings.http.max_body_bytes)
        self._require_ready()
        if isinstance(body, dict) and "labels" in body:
            return await self._label_batch(_validated(LabelBatchRequest, body))
        context = self._card_numbers.context()
        label = _validated(Label, body, context=context)
        outcome = await self._scorer.record_label(
            label.transaction_id, label.is_fraud, label.labelled_at
        )
        return json_response(
            LabelResponse(transaction_id=label.transaction_id, outcome=outcome),
            tokenised_header(tokenised_fields(context)),
        )

    async def _label_batch(self, batch: LabelBatchRequest) -> web.Response:
        limit = self._settings.http.max_batch_size
        if len(batch.labels) > limit:
            raise PayloadTooLarge(
                f"batch of {len(batch.labels)} labels exceeds the limit of {limit}"
            )
        results: list[LabelResponse | BatchItemError | None] = [None] * len(batch.labels)
        valid: list[tuple[int, Label]] = []
        tokenised: list[str] = []
        for i, item in enumerate(batch.labels):
            context = self._card_numbers.context()
            try:
                valid.append((i, _validated(Label, item, f"labels.{i}.", context)))
            except InvalidInput as exc:
                results[i] = _item_error_model(i, item, exc)
            tokenised += [f"labels.{i}.{name}" for name in tokenised_fields(context)]
        outcomes = await self._scorer.record_labels(
            [(label.transaction_id, label.is_fraud, label.labelled_at) for _, label in valid]
        )
        for (i, label), outcome in zip(valid, outcomes, strict=True):
            # Unknown ids (and labels that could not be stored) are reported per item.
            results[i] = (
                _item_error_model(i, label, outcome)
                if isinstance(outcome, ServiceError)
                else LabelResponse(transaction_id=label.transaction_id, outcome=outcome)
            )
        return json_response(
            LabelBatchResponse(results=[r for r in results if r is not None]),
            tokenised_header(tokenised),
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response(Health())

    async def readyz(self, request: web.Request) -> web.Response:
        # The audit-file check can wait on a lock: never on the event loop.
        problems = await asyncio.to_thread(self._scorer.check_ready)
        runner = request.app.get(STREAM)
        if runner is not None:
            problems += runner.problems()
        self._metrics.ready.set(0 if problems else 1)
        if problems:
            raise NotReady("; ".join(problems))
        return json_response(Readiness(model_version=self._scorer.model_version))

    async def metrics(self, request: web.Request) -> web.Response:
        # prometheus_client's content type carries parameters aiohttp's content_type refuses.
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document(self._settings.http))


def _validated(
    model: type[M], data: object, prefix: str = "", context: dict[str, Any] | None = None
) -> M:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc, prefix) from None
