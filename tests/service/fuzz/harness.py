"""The API conformance run: schemathesis against a throwaway ``riskscore serve``.

A real service on a free port with a fresh data directory, a scoring and a compliance API
key, the schema it serves at ``/openapi.json``, every check (see ``hooks.py`` for the one
narrowed rule by rule). The CI-sized run is ``test_api_conformance.py``; ``make fuzz`` runs
``python -m tests.service.fuzz.harness`` (≥ 10,000 cases).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
STARTUP_TIMEOUT_S = 120.0
HEADER = "X-API-Key"
# Cases per operation and phase: the CI-sized run (≥ 1,000 cases) and make fuzz (≥ 10,000).
CI_EXAMPLES = 40
FUZZ_EXAMPLES = 520  # 500 gave 9,916 cases over 14 operations: short of 10,000
# The CI-sized run asks report pages for HTML only: a PDF takes seconds to lay out, and
# make fuzz lays them out (every format value, valid or not).
QUICK = """
[parameters]
"query.format" = "html"
"""


@dataclass(frozen=True)
class Service:
    base_url: str
    scoring_key: str
    compliance_key: str


@dataclass(frozen=True)
class Figures:
    """What one run found, from schemathesis's JSON report."""

    cases: int
    failures: list[dict[str, Any]]
    errors: list[Any]
    operations_tested: int
    seconds: float
    command: str
    report: dict[str, Any]

    @property
    def server_errors(self) -> int:
        return sum(f.get("count", 1) for f in self.failures if f.get("code") == "ST101")

    def summary(self) -> str:
        return (
            f"{self.cases} cases over {self.operations_tested} operations in "
            f"{self.seconds:.0f} s: {len(self.failures)} kinds of failure "
            f"({self.server_errors} server errors), {len(self.errors)} errors"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(base_url: str, key: str) -> bool:
    request = urllib.request.Request(f"{base_url}/readyz", headers={HEADER: key})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextmanager
def throwaway_service(data_dir: Path) -> Iterator[Service]:
    """``riskscore serve`` with both key roles, no broker, its data in ``data_dir``; ready
    (model loaded, state rebuilt) when it is yielded, stopped (SIGTERM) after."""
    service = Service(
        f"http://127.0.0.1:{_free_port()}",
        "scoring-" + secrets.token_urlsafe(16),
        "compliance-" + secrets.token_urlsafe(16),
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "RISKSCORE_DATA_DIR": str(data_dir),
        "RISKSCORE_PORT": service.base_url.rsplit(":", 1)[1],
        "RISKSCORE_KAFKA": "off",
        "RISKSCORE_API_KEYS": service.scoring_key,
        "RISKSCORE_COMPLIANCE_API_KEYS": service.compliance_key,
    }
    log = (data_dir / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        # Readiness is the condition waited for; each probe waits on the socket itself.
        while not _ready(service.base_url, service.scoring_key):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"riskscore serve did not become ready:\n{(data_dir / 'serve.log').read_text()}"
                )
            time.sleep(0.2)
        yield service
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def run_schemathesis(
    service: Service,
    max_examples: int,
    report_dir: Path,
    seed: int | None = None,
    workers: int = 1,
    quick: bool = False,
) -> Figures:
    """``schemathesis run`` with every check against ``service``; its figures."""
    report = report_dir / "schemathesis.json"
    config = report_dir / "schemathesis.toml"
    config.write_text((HERE / "schemathesis.toml").read_text() + (QUICK if quick else ""))
    # The document itself needs a key: fetched here, then given to schemathesis as a file.
    schema = report_dir / "openapi.json"
    request = urllib.request.Request(
        f"{service.base_url}/openapi.json", headers={HEADER: service.scoring_key}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        schema.write_bytes(response.read())
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "run",
        str(schema),
        "--url",
        service.base_url,
        "--checks",
        "all",
        # Replaced by positive_data_acceptance_but_unstated_rules (hooks.py).
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        str(max_examples),
        "--workers",
        str(workers),
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
    ]
    if seed is not None:
        command += ["--seed", str(seed)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "SCHEMATHESIS_HOOKS": "tests.service.fuzz.hooks",
        "FUZZ_SCORING_KEY": service.scoring_key,
        "FUZZ_COMPLIANCE_KEY": service.compliance_key,
    }
    started = time.monotonic()
    output = report_dir / "schemathesis.out"
    with output.open("w") as out:  # written as it goes: a long run shows its progress
        # In the report directory: schemathesis keeps its cache (.schemathesis/) where it runs.
        subprocess.run(command, env=env, cwd=report_dir, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    if not report.exists():
        raise RuntimeError(f"schemathesis wrote no report:\n{output.read_text()}")
    data = json.loads(report.read_text())
    return Figures(
        cases=int(data["test_cases"]["generated"]),
        failures=list(data.get("failures") or []),
        errors=list(data.get("errors") or []),
        operations_tested=int((data.get("operations") or {}).get("tested", 0)),
        seconds=seconds,
        command=" ".join(command[1:]),
        report=data,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.service.fuzz.harness",
        description="Fuzz the HTTP API of a throwaway riskscore serve with schemathesis "
        "(every check) and print the figures.",
    )
    parser.add_argument(
        "--max-examples", type=int, default=FUZZ_EXAMPLES, help="cases per operation and phase"
    )
    parser.add_argument("--seed", type=int, default=None, help="repeat an earlier run")
    # One worker: hypothesis's lambda descriptions are not thread-safe on Python 3.11 ("AST
    # constructor recursion depth mismatch" with two), and the machine has few cores anyway.
    parser.add_argument("--workers", type=int, default=1, help="concurrent schemathesis workers")
    parser.add_argument(
        "--keep", type=Path, default=None, help="directory for the reports and the service log"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="riskscore-fuzz-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        (out / "data").mkdir(exist_ok=True)
        with throwaway_service(out / "data") as service:
            figures = run_schemathesis(service, args.max_examples, out, args.seed, args.workers)
        print(figures.summary())
        for failure in figures.failures:
            print(f"  {failure.get('code')} {failure.get('title')}: {failure.get('operations')}")
        if figures.failures or figures.errors:
            print((out / "schemathesis.out").read_text())
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
