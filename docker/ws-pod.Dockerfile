# syntax=docker/dockerfile:1
# ghcr.io/wsring/ws-pod: wsring pod sidecar: terminates WebSocket in front of the app, closes moved connections on reset
#
# Build from the repository root (the whole workspace is the build context):
#
#   docker build -f docker/ws-pod.Dockerfile -t ghcr.io/wsring/ws-pod:0.1.0 .
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
    cargo build --release --locked -p ws-pod --bin ws-pod \
 && install -D -m 0755 target/release/ws-pod /out/ws-pod

# glibc, libgcc, libssl and CA certificates; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ws-pod" \
      org.opencontainers.image.description="wsring pod sidecar: terminates WebSocket in front of the app, closes moved connections on reset" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/wsring"
COPY --from=builder /out/ws-pod /usr/local/bin/ws-pod
# The distroless "nonroot" user; numeric so that runAsNonRoot can verify it.
USER 65532:65532
# 8081: WebSocket listener (reached by routers only); 9091: admin (health, metrics, push API).
EXPOSE 8081 9091
ENTRYPOINT ["/usr/local/bin/ws-pod"]
