# riskscore scoring service: `docker build -t riskscore . && docker run -p 8080:8080 riskscore`
#
# Two stages: the first builds wheels (it may need compilers for source-only packages),
# the second installs them into a slim image with no compilers and no torch (training
# needs torch; serving does not).

FROM python:3.11-slim AS build
WORKDIR /src
RUN apt-get update \
    && apt-get install --yes --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY features ./features
COPY models ./models
COPY explain ./explain
COPY streaming ./streaming
COPY service ./service
COPY loadtest ./loadtest
# The postgres and redis extras too: the image can keep its audit store in PostgreSQL
# (RISKSCORE_AUDIT_URL) and its feature state in Redis (RISKSCORE_FEATURE_STATE_URL);
# serving extras only, never training's.
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[postgres,redis]'

FROM python:3.11-slim AS runtime
# LightGBM links OpenMP at run time; WeasyPrint (report PDFs) lays text out with Pango,
# in a font it can find.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 \
        libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --uid 10001 riskscore \
    && mkdir -p /var/lib/riskscore \
    && chown riskscore /var/lib/riskscore
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
USER riskscore
WORKDIR /home/riskscore
# The package directory is read-only for this user: compiled feature kernels are cached
# beside the audit store instead.
# HTTP only by default: the embedded broker would listen on the container's loopback,
# out of reach. Kafka: RISKSCORE_KAFKA=on with RISKSCORE_KAFKA_BOOTSTRAP_SERVERS, or with
# RISKSCORE_KAFKA_EMBEDDED_HOST=0.0.0.0 and RISKSCORE_KAFKA_EMBEDDED_ADVERTISED_HOST (README).
ENV RISKSCORE_HOST=0.0.0.0 \
    RISKSCORE_PORT=8080 \
    RISKSCORE_KAFKA=off \
    RISKSCORE_DATA_DIR=/var/lib/riskscore \
    NUMBA_CACHE_DIR=/var/lib/riskscore/numba-cache \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/riskscore"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
CMD ["riskscore", "serve"]
