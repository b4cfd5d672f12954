"""`riskscore serve`: run the HTTP scoring service."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web
from kafka.errors import KafkaError

from explain.audit.store import AuditStoreError
from features.state import FeatureStateUnavailable
from models.errors import ArtifactError
from models.rules.syntax import RuleSyntaxError
from service.cli.arguments import positive_int
from service.cli.errors import UserError, load_settings
from service.logs import setup_logging
from service.settings import HttpSettings, Settings, settings_table
from streaming.broker import BrokerError

KAFKA_HINT = (
    "Kafka is not available (set RISKSCORE_KAFKA_EMBEDDED_PORT to a free port, "
    "RISKSCORE_KAFKA_BOOTSTRAP_SERVERS to your brokers, or RISKSCORE_KAFKA=off)"
)


def register(sub: argparse._SubParsersAction) -> None:
    variables = "\n".join(f"  {name:<34} {text}" for name, _, text in settings_table())
    parser = sub.add_parser(
        "serve",
        help="run the HTTP scoring service (POST /score)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Serve POST /score, /score/batch, /labels, GET /decisions/{id}, /healthz, /readyz,\n"
            "the compliance role's GET /decisions and /reports/... (see the README),\n"
            "/metrics and /openapi.json. Every decision is written with its explanation to the\n"
            "audit store before it is answered. SIGTERM or SIGINT stops accepting connections,\n"
            "lets in-flight requests finish (RISKSCORE_SHUTDOWN_TIMEOUT_S) and flushes the store."
        ),
        epilog=f"configuration (environment variables):\n{variables}",
    )
    parser.add_argument("--host", help="interface to listen on (default: RISKSCORE_HOST)")
    parser.add_argument("--port", type=int, help="TCP port (default: RISKSCORE_PORT)")
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help=(
            "serving processes sharing the port (SO_REUSEPORT), supervised by this one; "
            "more than 1 needs RISKSCORE_FEATURE_STATE_URL and RISKSCORE_AUDIT_URL "
            "(default: 1)"
        ),
    )
    # Set by the supervising parent on each worker it starts (not for people).
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    overrides = {
        key: value for key in ("host", "port") if (value := getattr(args, key)) is not None
    }
    # The group is built (not given as a dict) so that its other variables are still read.
    settings = load_settings(lambda: Settings(http=HttpSettings(**overrides)))
    setup_logging(settings.log_level, settings.library_log_level, settings.log_format)
    if args.workers > 1 and args.worker_index is None:
        from service.cli.workers import supervise

        return supervise(settings, args.workers)
    # Imported here so that `riskscore --help` does not pay for the service's imports.
    from service.app import create_app
    from service.audit_backend import describe
    from service.event_loop import new_event_loop

    try:
        app = create_app(settings)
    except ArtifactError as exc:
        raise UserError(f"cannot load the model: {exc}") from exc
    except RuleSyntaxError as exc:
        raise UserError(f"cannot load the rules (RISKSCORE_RULES_FILE): {exc}") from exc
    except AuditStoreError as exc:
        raise UserError(f"cannot open the audit store: {exc}") from exc
    except FeatureStateUnavailable as exc:
        raise UserError(f"cannot reach the feature state: {exc}") from exc
    log = logging.getLogger("riskscore")
    log.info(
        "%sserving model from %s on http://%s:%d (audit store %s)",
        "" if args.worker_index is None else f"worker {args.worker_index}: ",
        settings.scoring.artifact_dir,
        settings.http.host,
        settings.http.port,
        describe(settings),
    )
    try:
        web.run_app(
            app,
            host=settings.http.host,
            port=settings.http.port,
            shutdown_timeout=settings.shutdown_timeout_s,
            access_log=None,
            print=lambda message: log.info("%s", message.strip()),
            loop=new_event_loop(settings.event_loop),
            # A worker shares its port with its siblings; the kernel spreads connections.
            reuse_port=args.worker_index is not None or None,
        )
    except (BrokerError, KafkaError) as exc:
        raise UserError(f"{KAFKA_HINT}: {exc}") from exc
    except FeatureStateUnavailable as exc:  # e.g. another process holds this directory's state
        raise UserError(str(exc)) from exc
    except OSError as exc:
        raise UserError(
            f"cannot listen on {settings.http.host}:{settings.http.port}: {exc}"
        ) from exc
    return 0
