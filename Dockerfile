# Ferry: a static binary on a minimal image.
#   docker build -t ferry .
#   docker run -v /etc/ferry:/etc/ferry -v /var/lib/ferry:/var/lib/ferry ferry run -c /etc/ferry/config.yaml
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
COPY importer/dendrite/wire/go.mod importer/dendrite/wire/
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/bot ./cmd/bot

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bot /usr/local/bin/bot
USER nonroot
VOLUME ["/var/lib/ferry"]
EXPOSE 29331
ENTRYPOINT ["/usr/local/bin/bot"]
CMD ["help"]
