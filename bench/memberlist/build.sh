#!/usr/bin/env bash
# Builds the memberlist side-by-side harness (main.go) against Debian's memberlist 0.2.2,
# installing Go and the library from Debian's packages where they are missing.
#
#   bench/memberlist/build.sh [OUT]      # OUT defaults to target/memberlist-bench
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../target/memberlist-bench}"

if ! command -v go >/dev/null 2>&1 || ! [ -d /usr/share/gocode/src/github.com/hashicorp/memberlist ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "build.sh: needs Go and Debian's golang-github-hashicorp-memberlist-dev (apt-get not found)" >&2
        exit 1
    fi
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq golang-go golang-github-hashicorp-memberlist-dev >/dev/null
fi

# Debian's Go libraries live in a GOPATH tree, not in modules.
export GO111MODULE=off GOPATH=/usr/share/gocode
export GOCACHE="${GOCACHE:-${TMPDIR:-/tmp}/memberlist-bench-gocache}"
cd "$here"
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
    echo "build.sh: not gofmt-formatted: $unformatted" >&2
    exit 1
fi
go vet .
mkdir -p "$(dirname "$out")"
go build -o "$out" .
echo "built $out"
