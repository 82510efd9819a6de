#!/bin/sh
# Build the static ringkv binary on the host and wrap it in an image FROM
# scratch. Nothing is pulled: the Dockerfile has no base image and no build
# stage. Run from anywhere inside the repository.
#
#   daemon/deploy/build-image.sh [tag]      # default tag ringkv:dev
#
# Environment: GO (default go), GOARCH (default the host's), DOCKER
# (default docker). The binary and the context live in a temporary directory
# that is removed afterwards; nothing is written to the repository.
set -eu

tag=${1:-ringkv:dev}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
go=${GO:-go}
docker=${DOCKER:-docker}

ctx=$(mktemp -d "${TMPDIR:-/tmp}/ringkv-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT INT TERM

echo "building static binary (CGO_ENABLED=0)" >&2
(cd "$root" && CGO_ENABLED=0 GOOS=linux "$go" build -trimpath -ldflags="-s -w" -o "$ctx/ringkv" ./cli/ringkv)
mkdir "$ctx/data"
cp "$here/Dockerfile" "$ctx/Dockerfile"

echo "building image $tag" >&2
"$docker" build --pull=false -t "$tag" "$ctx"
echo "$tag"
