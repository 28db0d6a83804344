# floodgate: a static Go binary on an empty base image.
#
#   docker build -t floodgate .
#   docker run --rm -p 5000:5000 -e REDIS_URL=redis://host:6379/0 -e SECRET_KEY=... floodgate
#
# Written for the classic builder as well as BuildKit: no RUN --mount, no
# heredocs, no `# syntax=` line. Override the images with --build-arg:
#   GO_IMAGE       build stage; its Go must be at least the go.mod `go` line,
#                  since the official golang images set GOTOOLCHAIN=local
#   RUNTIME_IMAGE  final stage; scratch, or e.g. gcr.io/distroless/static:nonroot
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=scratch

FROM ${GO_IMAGE} AS build
WORKDIR /src
# Dependencies first, so that this layer stays cached while only code changes.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/floodgate .

FROM ${RUNTIME_IMAGE}
# CA roots for rediss:// URLs (the empty base has none).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/floodgate /floodgate
# Numeric, so it needs no /etc/passwd: the "nonroot" user of distroless.
USER 65532:65532
ENV PORT=5000
EXPOSE 5000
# No HEALTHCHECK: the image has no shell, curl or wget. The service answers
# GET /healthz (200 while running) and GET /readyz (200 when Redis answers
# PING); point the orchestrator's HTTP probes at them.
ENTRYPOINT ["/floodgate"]
