# syntax=docker/dockerfile:1
# gracekeeper: a static Go binary on distroless, running as non-root.
# Build: make docker-build (IMG=gracekeeper:dev).

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so source edits reuse this layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
# CGO off: a static binary with no libc, so the distroless "static" base suffices.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.Version=${VERSION}" \
      -o /out/gracekeeper ./cmd/gracekeeper

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gracekeeper /gracekeeper
# 65532 is distroless's "nonroot"; the chart's securityContext runs as the same user.
USER 65532:65532
ENTRYPOINT ["/gracekeeper"]
CMD ["serve"]
