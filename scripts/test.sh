#!/usr/bin/env bash
# The whole test suite: installs its peers, builds (debug), runs every test, checks format
# and lints. Used by .ci/run.
set -euo pipefail
# No incremental caches: CI builds once from a clean clone, and disk is not unlimited.
export CARGO_INCREMENTAL=0
cd "$(dirname "$0")/.."
export MESHMETRIC_ENVOY="$(scripts/install-peers.sh | tail -1)"
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-fail-fast 2>&1 | tee target/test-output.txt
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
echo "${passed} passed, ${failed} failed"
