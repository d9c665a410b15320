# syntax=docker/dockerfile:1
# wincc-gateway as a container: build the wheels in one stage, install only them in a slim
# runtime that runs as an unprivileged user. See "Deployment" in README.md.
#
#   docker build -t wincc-gateway .
#   docker run -v ./gateway.toml:/etc/wincc-gateway/gateway.toml:ro \
#       -v wincc-buffer:/var/lib/wincc-gateway wincc-gateway

# ---- build: the project's wheel and the wheels of its dependencies ----------------------
FROM python:3.12.12-slim-bookworm AS build

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- runtime: python, the wheels, nothing else --------------------------------------------
FROM python:3.12.12-slim-bookworm

# Numeric ids, so that orchestrators can check "runAsNonRoot" without reading /etc/passwd.
RUN groupadd --system --gid 10001 wincc \
    && useradd --system --uid 10001 --gid wincc --no-create-home \
        --home-dir /var/lib/wincc-gateway --shell /usr/sbin/nologin wincc \
    && mkdir -p /var/lib/wincc-gateway /etc/wincc-gateway \
    && chown wincc:wincc /var/lib/wincc-gateway

# Installs from the build stage's wheels only: no compiler, no index, no source tree.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/wincc_gateway-*.whl

# The health endpoint must be reachable from outside the container's own loopback (the
# healthcheck below and a Prometheus scraper); a config file or -e may override it.
ENV GATEWAY_HEALTH__LISTEN=0.0.0.0:9100 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The store-and-forward buffer ([buffer] path): keep it on a volume so that messages
# waiting for the broker survive a container replacement.
VOLUME /var/lib/wincc-gateway
EXPOSE 9100

USER 10001:10001

# 503 (unhealthy) and a refused connection both fail the check; no curl needed.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('GATEWAY_HEALTH__LISTEN', ':9100').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=4); sys.exit(0)"]

# SIGTERM stops cleanly within the gateway's 10 s drain; give `docker stop -t 30` or
# compose's stop_grace_period some headroom above that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["wincc-gateway"]
CMD ["run", "--config", "/etc/wincc-gateway/gateway.toml"]
