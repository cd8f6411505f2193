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
# Listening on every interface needs access control. Mount the keys file
# (hashes only, made with "inventoryd add-key") as a secret and name it:
#   docker run -v inventory-data:/data -p 8080:8080 \
#     --mount type=bind,src=$PWD/keys.json,dst=/run/secrets/inventory-keys,readonly \
#     -e INVENTORY_KEYS_FILE=/run/secrets/inventory-keys inventoryd
# (a compose, Swarm or Kubernetes secret at that path works the same). With no
# keys file the binary refuses to start on 0.0.0.0 and says why, unless
# INVENTORY_INSECURE=1 is set on purpose; it then logs INSECURE at start.
ENV INVENTORY_ADDR=0.0.0.0:8080 \
    INVENTORY_DATA_DIR=/data
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/inventoryd"]
