# The operator image: `docker build -t REGISTRY/sluice:0.1.0 .` from the repository root.
# One binary, `sluice`, is the entrypoint: the Deployment runs `sluice run`, and each Envoy pod's
# shutdown-manager sidecar runs the same image with its own arguments.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
# rust-toolchain.toml is left out on purpose: the image's toolchain is the pinned 1.95, and
# rustup would otherwise try to download its components.
COPY Cargo.toml Cargo.lock ./
COPY operator operator
# The workspace's other member must be present for cargo to load the workspace.
COPY e2e e2e
RUN cargo build --release --locked -p sluice \
    && install -D -m 0755 target/release/sluice /out/sluice

# The binary links glibc (and libgcc), so the runtime is distroless "cc", not "static".
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sluice /usr/local/bin/sluice
# nonroot (65532), as the Deployment's securityContext expects.
USER 65532:65532
EXPOSE 8000 8001
ENTRYPOINT ["/usr/local/bin/sluice"]
