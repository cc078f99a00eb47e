# syntax=docker/dockerfile:1
#
# rwproxy container image.
#
#   docker build -t rwproxy .
#   docker run --rm -p 8080:8080 -p 9090:9090 \
#     -v /litefs:/litefs -v $PWD/rwproxy.toml:/etc/rwproxy/rwproxy.toml:ro rwproxy
#
# Without a file of your own the image runs config/container.toml. Other commands:
#   docker run --rm rwproxy check -c /etc/rwproxy/rwproxy.toml
#   docker run --rm rwproxy demo --duration 10s      # the local demo cluster, inside the container
#
# To ship rwproxy inside your app's image (LiteFS, the app and rwproxy side by side, as on
# Fly.io), copy the binary out of this image: see docs/deploy-fly.md.

FROM rust:1-bookworm AS build
WORKDIR /src
# `rwproxy --version` names the commit and date; .git is not in the build context, so pass them:
#   docker build --build-arg RWPROXY_COMMIT=$(git rev-parse --short=12 HEAD) \
#     --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) -t rwproxy .
# Without them it prints "commit unknown" and no date (the same bytes on every build).
ARG RWPROXY_COMMIT=""
ARG SOURCE_DATE_EPOCH=""
ENV RWPROXY_COMMIT=$RWPROXY_COMMIT SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH
COPY . .
# The cache mounts keep the registry and build artefacts between builds; the binary is copied
# out of the cached target directory in the same step, as the cache is not part of the image.
# The release profile ships no debug info (docs/packaging.md: sizes).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p rwproxy \
 && cp target/release/rwproxy /usr/local/bin/rwproxy

FROM debian:bookworm-slim
# ca-certificates: for https:// in writes.primary_url or cluster.url.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 rwproxy \
 && useradd --system --uid 10001 --gid rwproxy --no-create-home --shell /usr/sbin/nologin rwproxy
COPY --from=build /usr/local/bin/rwproxy /usr/local/bin/rwproxy
COPY config/container.toml /etc/rwproxy/rwproxy.toml
USER rwproxy:rwproxy
# 8080: the proxy listener (proxy.listen); 9090: the admin listener (/metrics, /health).
EXPOSE 8080 9090
# `rwproxy health` GETs http://127.0.0.1:9090/health: exit 0 on 200, 1 otherwise (lagging,
# no primary, not ready, draining, or no answer). With the admin listener elsewhere or disabled,
# override it, e.g. CMD ["rwproxy", "health", "--url", "http://127.0.0.1:8080/health"].
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["rwproxy", "health"]
# SIGTERM: health turns 503, in-flight requests finish (proxy.drain_timeout), exit 0.
# Reload the mounted file: `docker kill --signal HUP <container>`, or
# `docker exec <container> rwproxy reload -c /etc/rwproxy/rwproxy.toml`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["rwproxy"]
CMD ["run", "-c", "/etc/rwproxy/rwproxy.toml"]
