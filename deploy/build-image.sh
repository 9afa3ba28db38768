#!/usr/bin/env bash
# Builds the quicswim container image without pulling any base image: a statically linked
# binary (glibc with crt-static) put into an empty image by deploy/Dockerfile.static.
#
#   deploy/build-image.sh [TAG]          (TAG defaults to quicswim:static)
#
# QUICSWIM_BIN=PATH  use this already-built static binary instead of building one
# CARGO_TARGET_DIR   where cargo builds (default: the repository's target/); the static build
#                    lands in its x86_64-unknown-linux-gnu/ (or other host triple) directory,
#                    apart from the ordinary builds
set -euo pipefail

tag=${1:-quicswim:static}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cargo=${CARGO:-cargo}

if [[ -n ${QUICSWIM_BIN:-} ]]; then
    bin=$QUICSWIM_BIN
else
    host=$(rustc -vV | sed -n 's/^host: //p')
    # --target keeps RUSTFLAGS off build scripts and proc macros, which cannot be static.
    (cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" \
        "$cargo" build --release --locked -p quicswim-cli --target "$host")
    bin=${CARGO_TARGET_DIR:-$root/target}/$host/release/quicswim
fi

# An ELF program header of type PT_INTERP names a dynamic loader, which an empty image lacks.
if readelf -l "$bin" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    echo "error: $bin is dynamically linked; an image FROM scratch needs a static binary" >&2
    exit 1
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
install -m 0755 "$bin" "$context/quicswim"
# The release profile keeps debug info for profiling; the image does not need it.
strip "$context/quicswim" 2>/dev/null || true
mkdir -m 0700 "$context/data"

docker build -f "$root/deploy/Dockerfile.static" -t "$tag" "$context"
# The binary must start in an empty image: no loader, no libraries, no /etc.
docker run --rm --network none "$tag" --version
echo "built $tag"
