"""Record construction: a draft of the fast path (and the second stage's word) → Decision."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from explain.decision import Decision, Reasons, SequenceDecision, with_overrides
from models.cascade import Cascade, SequenceResult
from models.rules.policy import Override, Policy
from service.fast_path import Draft, ms

FAST_STAGE = "fast"
SEQUENCE_STAGE = "sequence"


def build_decision(
    draft: Draft,
    received: float,
    second: SequenceResult | None = None,
    cascade: Cascade | None = None,
    policy: Policy | None = None,
) -> Decision:
    """The decision: the fast path's, or the second stage's when it decided; then the
    lists and rules of ``policy`` (block > allow > rules > model), the one place an
    action is chosen from a score.

    ``received`` is the ``time.perf_counter()`` instant the request arrived: the decision's
    latency counts from it.
    """
    model = draft.bundle.model
    thresholds = model.thresholds
    coder = draft.bundle.coder
    k = len(coder.feature_names)
    score = draft.score
    stage = FAST_STAGE
    fallback = False
    fallback_reason = None
    sequence = None
    timings = draft.timings
    if second is not None:
        timings = {**timings, "sequence": ms(second.seconds)}
        if second.decided and second.score is not None and second.sequence_score is not None:
            assert cascade is not None and draft.view is not None
            score = second.score
            stage = SEQUENCE_STAGE
            earlier = draft.view.transaction_ids[:-1]  # the current payment is last
            sequence = SequenceDecision(
                cascade.model.version,
                draft.score,
                second.sequence_score,
                cascade.combination.describe(),
                tuple(str(t) for t in reversed(earlier)),
            )
        else:
            fallback = True
            fallback_reason = second.fallback_reason
    contributions = draft.contributions
    action = thresholds.action(score)
    reasons = draft.reasons
    overrides: tuple[Override, ...] = ()
    rules_version = None
    if policy is not None:
        tx = draft.tx
        rules_version = policy.rules_version
        verdict = policy.decide(
            tx.customer_id,
            tx.terminal_id,
            tx.amount,
            tx.currency,
            score,
            coder.feature_names,
            draft.values,
            action,
        )
        if verdict is not None:
            action = verdict.action  # type: ignore[assignment]
            overrides = verdict.overrides
            reasons = Reasons(
                reasons.indices, reasons.value_texts, with_overrides(reasons.json, overrides)
            )
    return Decision(
        transaction=draft.tx,
        request_sha256=draft.tx.digest,
        decided_at=datetime.now(UTC),
        score=score,
        action=action,
        stage=stage,  # type: ignore[arg-type]
        fallback=fallback,
        fallback_reason=fallback_reason,  # type: ignore[arg-type]
        model_version=model.version,
        reasons=reasons,
        schema=coder.schema,
        base_value=float(contributions[k]),
        raw_score=draft.raw,
        values=draft.values,
        contributions=contributions[:k],
        review_threshold=thresholds.review,
        decline_threshold=thresholds.decline,
        timings_ms=timings,
        latency_ms=ms(time.perf_counter() - received),
        sequence=sequence,
        overrides=overrides,
        rules_version=rules_version,
    )
