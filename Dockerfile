# Builds the hourglass binary and ships it on a slim Debian image.
# Settings come from the environment, with GigAPI's names (GIGAPI_ROOT, HTTP_PORT, ...).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin hourglass

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/hourglass /usr/local/bin/hourglass
ENV GIGAPI_ROOT=/data
VOLUME /data
EXPOSE 7971 8082 5432
ENTRYPOINT ["hourglass"]
