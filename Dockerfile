# Dockerfile - builds the ditserve binary and a slim runtime image (CPU backend, Debian 12).
# The CUDA image (nvidia/cuda base, demo model, HEALTHCHECK) arrives with the deployment issue; the
# build stage already takes a CUDA devel base through BUILD_BASE.
ARG BUILD_BASE=debian:12
ARG RUNTIME_BASE=debian:12-slim

FROM ${BUILD_BASE} AS build
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      build-essential cmake pkg-config libopenblas-dev libcjson-dev libpng-dev libmicrohttpd-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DDS_BUILD_TESTS=OFF && cmake --build /build -j"$(nproc)"

FROM ${RUNTIME_BASE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libopenblas0-pthread libcjson1 libpng16-16 libmicrohttpd12 libgomp1 \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 ditserve
COPY --from=build /build/server/ditserve /usr/local/bin/ditserve
USER ditserve
ENTRYPOINT ["ditserve"]
CMD ["info"]
