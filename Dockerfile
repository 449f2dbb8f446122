# Builds the hourglass binary and ships it on a slim Debian image, run as an
# unprivileged user. Settings come from the environment, with GigAPI's names
# (GIGAPI_ROOT, HTTP_PORT, ...). The web UI is built into the binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin hourglass && strip target/release/hourglass

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 hourglass \
    && useradd --system --uid 10001 --gid hourglass --home-dir /data --shell /usr/sbin/nologin hourglass \
    && mkdir -p /data && chown hourglass:hourglass /data
COPY --from=build /src/target/release/hourglass /usr/local/bin/hourglass
ENV GIGAPI_ROOT=/data
VOLUME /data
# HTTP API and web UI, FlightSQL, Postgres wire.
EXPOSE 7971 8082 5432
USER hourglass
ENTRYPOINT ["hourglass"]
