"""The Dockerfile, checked without a Docker engine: what it copies exists, it keeps its promises."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def _instructions() -> list[str]:
    # Join continuation lines so each instruction is one string.
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    lines = (line.strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_every_copied_path_exists() -> None:
    copies = [i for i in _instructions() if i.startswith("COPY ") and "--from=" not in i]
    assert copies
    for instruction in copies:
        sources = instruction.split()[1:-1]
        for source in sources:
            assert (REPO / source).exists(), f"{instruction}: {source} is not in the repository"


def test_every_package_of_the_project_is_copied() -> None:
    copied = {i.split()[1] for i in _instructions() if i.startswith("COPY ")}
    for package in ("features", "models", "explain", "streaming", "service", "loadtest"):
        assert package in copied


def test_runtime_stage_is_slim_non_root_and_healthchecked() -> None:
    stages = re.split(r"^FROM ", DOCKERFILE, flags=re.MULTILINE)[1:]
    assert len(stages) == 2, "multi-stage: a build stage and a runtime stage"
    runtime = stages[-1]
    assert runtime.startswith("python:3.11-slim")
    assert "build-essential" not in runtime and "gcc" not in runtime
    assert "torch" not in runtime
    assert re.search(r"^USER (?!root)\w+", runtime, flags=re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*?/healthz", re.sub(r"\\\n\s*", " ", runtime), re.M)
    assert 'CMD ["riskscore", "serve"]' in runtime


def test_the_wheel_build_installs_no_training_extras() -> None:
    # Only the serving extras (the audit store on PostgreSQL, the feature state in Redis):
    # torch (the `train` extra) stays out of the image.
    build = [i for i in _instructions() if i.startswith("RUN pip wheel")]
    assert build
    extras = re.findall(r"\.\[([^\]]*)\]", build[0])
    assert all(e.strip() in ("postgres", "redis") for x in extras for e in x.split(",")), build[0]


def test_the_image_serves_http_only_and_the_readme_says_how_to_add_kafka() -> None:
    # An embedded broker bound to the container's loopback is unreachable from outside.
    env = " ".join(i for i in _instructions() if i.startswith("ENV "))
    assert "RISKSCORE_KAFKA=off" in env
    readme = (REPO / "README.md").read_text()
    for documented in (
        "RISKSCORE_KAFKA=off",
        "RISKSCORE_KAFKA_EMBEDDED_HOST=0.0.0.0",
        "RISKSCORE_KAFKA_EMBEDDED_ADVERTISED_HOST",
        "-p 9092:9092",
    ):
        assert documented in readme


def test_the_image_can_write_pdf_reports() -> None:
    # WeasyPrint loads Pango when a PDF is asked for: without it every PDF would fail.
    runtime = re.split(r"^FROM ", DOCKERFILE, flags=re.MULTILINE)[-1]
    for package in ("libpango-1.0-0", "libpangoft2-1.0-0", "fonts-dejavu-core"):
        assert package in runtime, package
