# Dockerfile - ditserve's container images; one file, two variants chosen by the VARIANT build argument:
#   docker build -t ditserve .                              CUDA (default): nvidia/cuda devel -> runtime
#   docker build -t ditserve:cpu --build-arg VARIANT=cpu .  CPU only: Debian 12 (bookworm)
# Multi-stage (compiler and headers stay in the build stage); the runtime stage has the binary, its shared
# libraries, the demo model (/opt/ditserve/share/ditserve/demo, found next to the binary), a non-root user,
# and a HEALTHCHECK on /health. It listens on 0.0.0.0:8080 (DITSERVE_HOST / DITSERVE_PORT); arguments go to
# ditserve (ENTRYPOINT), so
#   docker run --gpus all -p 8080:8080 ditserve                                       serves the demo model
#   docker run --gpus all -p 8080:8080 -v /models:/models ditserve --model flux=/models/FLUX.1-dev
# Picking a stage by VARIANT needs BuildKit (the default builder since Docker 23; DOCKER_BUILDKIT=1 before).
# The build steps themselves are deploy/image_steps.sh, which deploy/docker-test.sh also runs in a chroot
# where no Docker engine can run. docs/deploy.md covers the images, Kubernetes and scaling out.
ARG VARIANT=cuda
ARG CUDA_VERSION=12.4.1
ARG CPU_BUILD_BASE=debian:bookworm
ARG CPU_RUNTIME_BASE=debian:bookworm-slim

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu22.04 AS build-cuda
FROM ${CPU_BUILD_BASE} AS build-cpu

FROM build-${VARIANT} AS build
ARG VARIANT
ARG DS_CUDA_ARCHS="80;90"
COPY deploy/image_steps.sh /usr/local/bin/image_steps.sh
RUN image_steps.sh build-deps ${VARIANT}
COPY . /src
RUN DS_CUDA_ARCHS="${DS_CUDA_ARCHS}" image_steps.sh build ${VARIANT} /src

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu22.04 AS runtime-cuda
FROM ${CPU_RUNTIME_BASE} AS runtime-cpu

FROM runtime-${VARIANT}
COPY deploy/image_steps.sh /usr/local/bin/image_steps.sh
RUN image_steps.sh runtime-deps && rm /usr/local/bin/image_steps.sh
COPY --from=build /opt/ditserve /opt/ditserve
ENV PATH=/opt/ditserve/bin:$PATH \
    DITSERVE_HOST=0.0.0.0 \
    DITSERVE_PORT=8080 \
    OMP_WAIT_POLICY=passive
USER 10001:10001
EXPOSE 8080
# /health is 503 until every model has loaded and run one warm-up step: a real checkpoint needs the long
# start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${DITSERVE_PORT}/health" || exit 1
ENTRYPOINT ["ditserve"]
