# Multi-stage build: a static binary on a distroless base, run as non-root.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/inventoryd ./cmd/inventoryd \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/inventoryd /inventoryd
# The volume starts owned by the non-root user, so a fresh named volume is writable.
COPY --from=build --chown=65532:65532 /out/data /data
VOLUME /data
ENV INVENTORY_ADDR=0.0.0.0:8080 \
    INVENTORY_DATA_DIR=/data
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/inventoryd"]
