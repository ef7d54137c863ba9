#!/usr/bin/env bash
# The test command: starts the services the tests need, builds every binary (end-to-end tests
# launch them as real processes), runs the whole test suite including the tests that need those
# services, and stops the services again, whatever happens.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p mesoflow-proto   # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

export MESOFLOW_SERVICES_DIR="${MESOFLOW_SERVICES_DIR:-$(mktemp -d -t mesoflow-services.XXXXXX)}"
cleanup() { scripts/services.sh stop || true; rm -rf "$MESOFLOW_SERVICES_DIR"; }
trap cleanup EXIT
eval "$(scripts/services.sh start)"

cargo build --workspace --bins
if [ $# -eq 0 ]; then set -- --workspace; fi
cargo test "$@" --no-fail-fast -- --include-ignored
