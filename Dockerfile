# piivault in a container: build on the official Swift image, run on debian:bookworm-slim with only the runtime
# libraries. `docker build -t piivault .` then e.g.
#   docker run --rm -e PIIVAULT_DATABASE_URL=... piivault migrate
# The image runs as the unprivileged user `piivault` (uid/gid 10001); mount key files owned by that uid, mode 0400.
# /var/lib/piivault (0700, owned by it) is where a runtime can write key files (deploy/ecs).
ARG SWIFT_IMAGE=swift:6.3-bookworm

FROM ${SWIFT_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsodium-dev libpq-dev libssl-dev libxml2-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that a source change does not refetch them.
COPY Package.swift ./
RUN swift package resolve
COPY Sources ./Sources
COPY Tests ./Tests
COPY migrations ./migrations
COPY scripts/install-piivault ./scripts/install-piivault
# The Swift runtime is linked in, so the run stage needs no Swift toolchain libraries.
RUN swift build -c release --static-swift-stdlib --product piivault \
    && scripts/install-piivault "$(swift build -c release --static-swift-stdlib --show-bin-path)" /staging/usr/local

FROM debian:bookworm-slim
# libxml2: Foundation's XML parser (SQS responses); libsodium23, libpq5: sealing and PostgreSQL; ca-certificates:
# TLS to AWS and to PostgreSQL with sslmode=verify-full.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsodium23 libpq5 libxml2 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 piivault \
    && useradd --system --uid 10001 --gid piivault --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin piivault \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/piivault
COPY --from=build /staging/usr/local/ /usr/local/
USER 10001:10001
WORKDIR /var/lib/piivault
ENTRYPOINT ["piivault"]
CMD ["--help"]
