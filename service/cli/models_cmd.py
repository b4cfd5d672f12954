"""`riskscore models`: the model versions of a running service, their promotion, and the
shadow challenger."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from service.cli.errors import UserError, load_settings

DEFAULT_TIMEOUT_S = 120.0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "models",
        help="list the model versions of a running service, promote one, shadow one",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Talk to a running `riskscore serve` (RISKSCORE_MODEL_DIR a directory of versions).\n"
            "list: the champion, the challenger and every version (GET /models).\n"
            "promote VERSION: load it, check every file against its SHA-256, then serve it\n"
            "(POST /models/VERSION/promote); every process sharing the model directory follows\n"
            "within RISKSCORE_MODEL_POLL_S. Rollback is promoting the previous version.\n"
            "challenge VERSION: load it the same way, then score every decided payment with it\n"
            "in the shadow (after the answer; its verdicts stored beside the decisions);\n"
            "challenge --off switches the shadow off. Every process follows, as for promote.\n"
            "The API key defaults to the first of RISKSCORE_ADMIN_API_KEYS."
        ),
        epilog=(
            "examples:\n"
            "  riskscore models list --url http://127.0.0.1:8080\n"
            "  riskscore models promote fast-20240430-e37e5754 --url http://127.0.0.1:8080\n"
            "  riskscore models challenge fast-20240531-0a1b2c3d --url http://127.0.0.1:8080\n"
            "  riskscore models challenge --off --url http://127.0.0.1:8080"
        ),
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the versions, as JSON")
    promote = actions.add_parser("promote", help="make VERSION the champion")
    promote.add_argument("version", help="its model_version, or its directory name")
    challenge = actions.add_parser(
        "challenge", help="shadow VERSION (score every payment with it, after the answer)"
    )
    challenge.add_argument("version", nargs="?", help="its model_version, or its directory name")
    challenge.add_argument("--off", action="store_true", help="switch the shadow off")
    for action in (listing, promote, challenge):
        action.add_argument(
            "--url",
            default=None,
            help="the service (default: http://RISKSCORE_HOST:RISKSCORE_PORT)",
        )
        action.add_argument("--api-key", help="an admin key (default: as described above)")
        action.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT_S,
            help=f"seconds to wait for the answer (default {DEFAULT_TIMEOUT_S:g})",
        )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    http = settings.http
    base = args.url or f"http://{http.host}:{http.port}"
    key = args.api_key or (http.admin_api_keys[0] if http.admin_api_keys else None)
    if args.action == "challenge":
        if args.off == (args.version is not None):
            raise UserError("riskscore models challenge: give a VERSION, or --off (not both)")
        if args.off:
            answer = _call(f"{base}/models/challenger", "DELETE", key, http.api_key_header, args)
        else:
            version = urllib.parse.quote(args.version, safe="")
            url = f"{base}/models/{version}/challenge"
            answer = _call(url, "POST", key, http.api_key_header, args)
        challenger = answer.get("challenger")
        print(f"challenger: {'none' if challenger is None else challenger['version']}")
    elif args.action == "promote":
        version = urllib.parse.quote(args.version, safe="")
        answer = _call(f"{base}/models/{version}/promote", "POST", key, http.api_key_header, args)
        print(f"champion: {answer['champion']['version']}")
    else:
        answer = _call(f"{base}/models", "GET", key, http.api_key_header, args)
        print(json.dumps(answer, indent=2))
    return 0


def _call(
    url: str, method: str, key: str | None, header: str, args: argparse.Namespace
) -> dict[str, Any]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if key:
        request.add_header(header, key)
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = error.reason
        raise UserError(f"{method} {url}: {error.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"cannot reach {url}: {exc}") from None
