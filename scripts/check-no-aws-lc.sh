#!/usr/bin/env bash
# Fails when aws-lc-sys (or aws-lc-rs) is anywhere in the dependency tree.
#
# mesoflow uses ring as its only TLS crypto provider: aws-lc is slow to build, and once rustls
# sees two providers, `ClientConfig::builder()` panics at runtime. A dependency that turns on
# rustls' default features (reqwest, zookeeper-client `tls`, metrics exporters...) brings it back
# silently; this check catches that in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
for crate in aws-lc-sys aws-lc-rs; do
    # `cargo tree -i` exits non-zero with "did not match any packages" when the crate is absent.
    if output=$(cargo tree --workspace --all-features --target all -e normal,build,dev -i "$crate" 2>&1); then
        echo "error: $crate is in the dependency tree; keep rustls/quinn on ring only." >&2
        echo "Dependents of $crate:" >&2
        echo "$output" >&2
        status=1
    elif ! grep -q "did not match any packages" <<<"$output"; then
        echo "error: could not inspect the dependency tree for $crate:" >&2
        echo "$output" >&2
        status=2
    fi
done
if [ "$status" -eq 0 ]; then
    echo "ok: neither aws-lc-sys nor aws-lc-rs is in the dependency tree"
fi
exit "$status"
