# syntax=docker/dockerfile:1
#
# Ordinaut: one static-ish binary on Debian slim. Build from the repository root:
#   docker build -t ordinaut .
# The image runs as uid 10001, writes nothing outside /tmp (mount a tmpfs there when the
# root filesystem is read-only), and checks its own health with `ordinaut healthcheck`
# (no curl, no shell needed). ops/validate.sh checks that every COPY source exists, and
# ops/build-context.sh (run by CI) builds the release binary from exactly the files this
# build context admits, so a file embedded at compile time but left out fails CI.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# Only what the release binary is built from: the manifest, the sources, the migrations
# (embedded at compile time by sqlx::migrate!) and the example configuration (embedded
# by `ordinaut dev` with include_str!). Anything else embedded must be added here and in
# .dockerignore.
COPY Cargo.toml Cargo.lock ordinaut.example.toml ./
COPY src ./src
COPY migrations ./migrations
# Cache mounts keep the registry and compiled dependencies between builds; the binary
# is copied out because the cache is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ordinaut \
    && install -D -m 0755 target/release/ordinaut /out/ordinaut

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# tini as PID 1: forwards SIGTERM to ordinaut (which drains its jobs) and reaps the
# orphaned grandchildren that `command` job kinds may leave behind.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ordinaut \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent \
       --no-create-home --shell /usr/sbin/nologin ordinaut \
    && mkdir -p /etc/ordinaut
COPY --from=builder /out/ordinaut /usr/local/bin/ordinaut
# ./ordinaut.toml is read when present: mount it at /etc/ordinaut/ordinaut.toml.
WORKDIR /etc/ordinaut
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
ENV API_HOST=0.0.0.0 \
    API_PORT=8080 \
    TMPDIR=/tmp
EXPOSE 8080
# The default command is the API, so the default health check is its /ready. Worker and
# scheduler containers override it with `ordinaut healthcheck --db` and `--scheduler`
# (ops/).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["ordinaut", "healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "ordinaut"]
CMD ["api"]
