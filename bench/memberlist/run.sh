#!/usr/bin/env bash
# Builds the memberlist harness and runs it in a network namespace of its own (loopback
# only), so that the kernel's packet counters it reads count its nodes' traffic and nothing
# else. Needs root for the namespace; without it the run goes on in the machine's own
# namespace and the report's kernel_* figures count every process's traffic.
#
#   bench/memberlist/run.sh --nodes 32 > memberlist-32.json
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$here/../../target/memberlist-bench"
"$here/build.sh" "$bin" >&2
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1; then
    exec unshare -n sh -c 'ip link set lo up && exec "$0" "$@"' "$bin" "$@"
fi
echo "run.sh: not root; running in the machine's own network namespace" >&2
exec "$bin" "$@"
