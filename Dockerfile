# syntax=docker/dockerfile:1
# The toolfleet image: a worker (one Celery worker holding one tool instance), Flower,
# or a producer, depending on the command. See docker-compose.yml and docs/deploy.md.
#
#   docker build -t toolfleet .                                  # python, bash, sqlite3
#   docker build -t toolfleet --build-arg WITH_NODE=1 .          # ... and node
#   docker build -t toolfleet-aider --build-arg WITH_AIDER=1 .   # ... and aider
#   docker build -t toolfleet-agents --build-arg WITH_AGENTS=1 . # ... and Claude Code, Gemini, Codex
#
# BASE_IMAGE: any Debian bookworm image with python3 (3.11) and python3-venv; the default
# is Docker Hub's. Where no registry is reachable, scripts/base-images makes one from
# Debian's packages. Behind a TLS-intercepting proxy, give the build the proxy's CA
# bundle as the secret build_ca (docs/deploy.md); pip and npm then trust it.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# 1: also install aider (aider-chat, in its own virtualenv) and git, which aider needs
ARG WITH_AIDER=0
# 1: also install the agent CLIs spoken to through their own protocols (Claude Code, npm)
ARG WITH_AGENTS=0
# 1: also install Node.js, for the built-in `node` profile (80 MB: no compose service
# runs it; the agent CLIs bring their own)
ARG WITH_NODE=0

# toolfleet lives in a virtualenv of its own (Debian's python3 refuses system-wide
# installs, PEP 668), first on PATH
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120 \
    PIP_RETRIES=10 \
    PATH=/opt/venv/bin:$PATH

# The built-in tools' programs (python3 is the base image's; bash is in Debian's base),
# and tini as PID 1: it forwards SIGTERM to the worker and reaps orphaned tool children.
# Not pinned: Debian's stable suite only takes fixes, and old pins vanish from its mirrors.
# hadolint ignore=DL3008
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends sqlite3 tini; \
    if [ "$WITH_NODE" = "1" ] || [ "$WITH_AGENTS" = "1" ]; then \
        apt-get install -y --no-install-recommends nodejs; \
    fi; \
    if [ "$WITH_AIDER" = "1" ] || [ "$WITH_AGENTS" = "1" ]; then \
        apt-get install -y --no-install-recommends git; \
    fi; \
    if [ "$WITH_AGENTS" = "1" ]; then apt-get install -y --no-install-recommends npm; fi; \
    apt-get clean; rm -rf /var/lib/apt/lists/*

# aider-chat pins exact versions of ~100 packages (pydantic, click, rich, ...), so it gets
# a virtualenv of its own instead of sharing (and fighting over) toolfleet's, at the
# versions of lock/aider.txt (the ones the tests ran); the profile only needs `aider` on
# PATH. Git identity and safe.directory for the mounted
# repository (owned by whoever created it) are set system-wide.
# hadolint ignore=DL3013
COPY lock/aider.txt /opt/lock/
RUN --mount=type=secret,id=build_ca,target=/run/secrets/build_ca set -eux; \
    if [ -s /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi; \
    if [ "$WITH_AIDER" = "1" ]; then \
        python3 -m venv /opt/aider; \
        /opt/aider/bin/pip install --require-hashes -r /opt/lock/aider.txt; \
        ln -s /opt/aider/bin/aider /usr/local/bin/aider; \
        aider --version; \
        git config --system user.name "toolfleet aider"; \
        git config --system user.email "aider@toolfleet.invalid"; \
        git config --system --add safe.directory '*'; \
    fi

# Claude Code, Gemini CLI and Codex from npm (with their platform binaries), at the
# versions of lock/agents/package-lock.json (npm ci); the profiles need `claude`,
# `gemini` and `codex` on PATH
COPY lock/agents/package.json lock/agents/package-lock.json /opt/agents/
RUN --mount=type=secret,id=build_ca,target=/run/secrets/build_ca set -eux; \
    if [ -s /run/secrets/build_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/build_ca; fi; \
    if [ "$WITH_AGENTS" = "1" ]; then \
        cd /opt/agents && npm ci --no-audit --no-fund; \
        ln -s /opt/agents/node_modules/.bin/claude /opt/agents/node_modules/.bin/gemini \
            /opt/agents/node_modules/.bin/codex /usr/local/bin/; \
        claude --version; \
        gemini --version; \
        codex --version; \
    fi

# toolfleet with what a worker needs (and Flower, which runs from the same image), its
# dependencies at the versions of lock/app.txt (the ones the tests ran)
WORKDIR /opt/toolfleet
COPY lock/app.txt ./lock/
RUN --mount=type=secret,id=build_ca,target=/run/secrets/build_ca set -eux; \
    if [ -s /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi; \
    python3 -m venv /opt/venv; \
    pip install --require-hashes -r lock/app.txt
COPY pyproject.toml README.md ./
COPY src ./src
RUN --mount=type=secret,id=build_ca,target=/run/secrets/build_ca set -eux; \
    if [ -s /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi; \
    pip install --no-deps ".[worker,flower,exporter]"; \
    toolfleet --version

# An unprivileged user. Its HOME is writable: tools (aider) keep their ~/.* files there,
# and every container (so every instance) has its own.
RUN set -eux; \
    groupadd --gid 1000 toolfleet; \
    useradd --uid 1000 --gid toolfleet --create-home --home-dir /home/toolfleet \
        --shell /bin/bash toolfleet; \
    install -d -o toolfleet -g toolfleet /repo
# numeric, so that runtimes enforcing "non-root" can check it without /etc/passwd
USER 1000:1000
ENV HOME=/home/toolfleet
WORKDIR /home/toolfleet

ENTRYPOINT ["tini", "--"]
CMD ["toolfleet", "worker", "--profile", "python"]
