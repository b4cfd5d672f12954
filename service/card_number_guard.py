"""Card numbers in URLs: every path and query parameter passes the card-number policy
before any handler (or log line) sees it.

Bodies are screened where they are validated (the id fields of ``features.schema``); a URL
is screened here once for every route, those added later included: ``/decisions/{id}``,
``/reports/decisions/{id}.html``, ``GET /decisions?customer_id=`` and the like. Under
``tokenise`` a card number in the URL becomes its token, so a lookup by card finds the
decision stored under the token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import MultiDict

from features.card_numbers import REFUSAL, CardNumberPolicy, CardNumberRefused
from service.errors import InvalidInput

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Response header naming the fields whose card numbers were replaced by tokens.
TOKENISED_HEADER = "Card-Number-Tokenised"


def tokenised_header(fields: list[str]) -> dict[str, str] | None:
    """The response header that tells a client which of its values were tokenised."""
    return {TOKENISED_HEADER: ", ".join(fields)} if fields else None


def card_number_middleware(policy: CardNumberPolicy) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if policy.mode == "allow":
            return await handler(request)
        refused: list[str] = []
        tokenised: list[str] = []
        path = _screened(policy, request.match_info.items(), refused, tokenised)
        query = _screened(policy, request.query.items(), refused, tokenised)
        for name, value in path:
            request.match_info[name] = value  # a dict: what the handler will read
        if refused:
            raise InvalidInput(
                f"invalid request: {', '.join(refused)}",
                [{"field": name, "message": REFUSAL} for name in refused],
            )
        if not tokenised:
            return await handler(request)
        if any(name in request.query for name in tokenised):
            request = request.clone(rel_url=request.rel_url.with_query(MultiDict(query)))
        response = await handler(request)
        if not response.prepared:  # a streamed export has sent its headers already
            response.headers[TOKENISED_HEADER] = ", ".join(tokenised)
        return response

    return middleware


def _screened(
    policy: CardNumberPolicy,
    params: Iterable[tuple[str, str]],
    refused: list[str],
    tokenised: list[str],
) -> list[tuple[str, str]]:
    """The parameters as they may be used; names the refused and tokenised ones."""
    kept = []
    for name, value in params:
        try:
            screened = policy.screen(value)
        except CardNumberRefused:
            refused.append(name)
            continue
        if screened != value:
            tokenised.append(name)
        kept.append((name, screened))
    return kept
