# syntax=docker/dockerfile:1
# ghcr.io/wsring/wsring-router: wsring router: routes WebSocket upgrades to the pod owning the routing key and tunnels the bytes
#
# Build from the repository root (the whole workspace is the build context):
#
#   docker build -f docker/router.Dockerfile -t ghcr.io/wsring/wsring-router:0.1.0 .
#
# Needs BuildKit (the default builder of Docker 23+, and docker buildx) for the
# cache mounts: crates and target/ are cached between builds but never end up in
# an image layer. See docs/packaging.md, "Images".

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# --locked: build exactly the dependency versions of Cargo.lock.
RUN --mount=type=cache,id=wsring-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=wsring-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=wsring-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p wsring-router --bin wsring-router \
 && install -D -m 0755 target/release/wsring-router /out/wsring-router

# glibc, libgcc, libssl and CA certificates; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="wsring-router" \
      org.opencontainers.image.description="wsring router: routes WebSocket upgrades to the pod owning the routing key and tunnels the bytes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/wsring"
COPY --from=builder /out/wsring-router /usr/local/bin/wsring-router
# The distroless "nonroot" user; numeric so that runAsNonRoot can verify it.
USER 65532:65532
# 8080: public WebSocket listener; 9090: admin (health, metrics, ring, push API).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/wsring-router"]
