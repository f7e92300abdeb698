# piivault container image: build with the Swift toolchain, run on slim Debian with only the runtime libraries.
# Build: docker build -t piivault .   Run: docker run --rm piivault etl --help
FROM swift:6.3-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsodium-dev libpq-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
COPY migrations ./migrations
# The Swift standard library linked in, so the runtime image needs no Swift toolchain.
RUN swift build -c release --product piivault --static-swift-stdlib \
    && install -D -m 0755 "$(swift build -c release --show-bin-path)/piivault" /out/bin/piivault \
    && install -d /out/share/piivault/migrations/definitions \
    && install -m 0644 migrations/*.sql /out/share/piivault/migrations/ \
    && install -m 0644 migrations/definitions/*.sql /out/share/piivault/migrations/definitions/

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsodium23 libpq5 libssl3 ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 piivault \
    && useradd --system --uid 10001 --gid piivault --home-dir /nonexistent --shell /usr/sbin/nologin piivault \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/piivault
# /var/lib/piivault (0700, the user's own) is where a runtime writes key files (deploy/ecs). A volume, so that a
# volume mounted there (Fargate's task volumes) starts with this folder's owner and mode, not root's 0755.
VOLUME ["/var/lib/piivault"]
# The binary finds its migrations in share/piivault/migrations beside its bin folder.
COPY --from=build /out/ /usr/local/
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/piivault"]
CMD ["--help"]
