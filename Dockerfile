# syntax=docker/dockerfile:1
# sekisho's container image: one static binary (CGO_ENABLED=0) on
# distroless static (CA certificates and time zones, no shell, no package
# manager), running as the non-root user 65532. It writes nothing outside
# /tmp, so it runs with a read-only root file system (the Helm chart mounts
# an emptyDir at /tmp).
#
#   docker build -t sekisho --build-arg VERSION=$(git describe --tags) .

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The build command is the one deploy/image_test.go runs and checks (static,
# no interpreter, no shared libraries): keep it on one line.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/sekisho ./cmd/sekisho

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sekisho /usr/local/bin/sekisho
USER 65532:65532
# Gateway, admin (/healthz, /readyz, /metrics); the decision service
# (9191, 9192) and the token webhook (8443) when configured.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/sekisho"]
CMD ["serve", "--config", "/etc/sekisho/config/sekisho.yaml"]
