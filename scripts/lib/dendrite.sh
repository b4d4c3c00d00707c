# Builds Dendrite v0.15.2 (its own module in tools/dendrite, from the Go
# module proxy) into a cache outside the clone, once per version, and the
# import helper beside it (Ferry's own code: rebuilt on every call, which
# Go's build cache makes quick). Exports FERRY_DENDRITE_DIR.
# Source from the repository root.
build_dendrite() {
  local cache="${FERRY_CACHE:-$HOME/.cache/ferry}" version=v0.15.2
  local dir="$cache/dendrite-$version"
  if [ ! -x "$dir/dendrite" ] || [ ! -x "$dir/generate-config" ] || [ ! -x "$dir/generate-keys" ]; then
    echo "building Dendrite $version into $dir (once, a few minutes)"
    mkdir -p "$dir"
    (cd tools/dendrite && for c in dendrite generate-config generate-keys; do
       go build -o "$dir/$c" "github.com/element-hq/dendrite/cmd/$c"; done)
  fi
  (cd tools/dendrite && go build -o "$dir/ferry-dendrite-import" ./importhelper)
  export FERRY_DENDRITE_DIR="$dir"
}

# Vets and tests the import helper (its drain against a real JetStream). Its
# module is not reached by `go test ./...` from the repository root.
test_dendrite_helper() {
  (cd tools/dendrite && go vet ./importhelper && go test -count=1 ./importhelper)
}
