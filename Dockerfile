# Static Passerelle binaries in a small image. One image, several commands:
#   docker run IMAGE passerelle serve --data-dir /data ...
#   docker run IMAGE manager | bridge | hub ...
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/bin/ ./cmd/passerelle ./cmd/manager ./cmd/bridge ./cmd/hub ./cmd/hubdemo \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bin/ /usr/local/bin/
# A named volume mounted on /data starts with this folder's owner: nonroot.
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot:nonroot
WORKDIR /data
ENTRYPOINT []
CMD ["passerelle", "serve", "--data-dir", "/data", "--admin-addr", "0.0.0.0:8080", "--mqtt-addr", "0.0.0.0:8883", "--hub-addr", "0.0.0.0:8090", "--pubsub-addr", "0.0.0.0:8085", "--http-bridge-addr", "0.0.0.0:8443"]
