# The rampart image, for builders with registry access (`docker build -t rampart:0.1.0 .` or
# `podman build`). `scripts/image` builds an equivalent image offline from the release binary.
FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/rampart /rampart

# glibc, libgcc, CA certificates, /tmp and the `nonroot` user (65532); no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /rampart /usr/local/bin/rampart
# Commit allocator memory as it is used (a smaller, steadier RSS under limits).
ENV MIMALLOC_ARENA_EAGER_COMMIT=0
USER 65532:65532
WORKDIR /home/nonroot
ENTRYPOINT ["/usr/local/bin/rampart"]
CMD ["--help"]
