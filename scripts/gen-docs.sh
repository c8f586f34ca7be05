#!/usr/bin/env bash
# Regenerates the reference files whose source of truth is code: docs/cli.md (the clap
# definitions of the three binaries), docs/openapi.json (the REST API's utoipa annotations) and
# the JSON Schemas and CRDs (the policy types). The e2e_docs and schema tests fail when these
# are stale.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --quiet
B=target/debug
{
  echo "# CLI reference"
  echo
  echo "Generated from the binaries' own definitions by \`scripts/gen-docs.sh\`; the test suite fails"
  echo "when this page is stale. Shell completions: \`meshmetricctl completion bash|zsh|fish\`."
  echo
  "$B/meshmetric-cp" --help-markdown
  echo
  "$B/meshmetric-dp" help-markdown
  echo
  "$B/meshmetricctl" help-markdown
} > docs/cli.md
"$B/meshmetric-cp" --print-openapi > docs/openapi.json
"$B/meshmetricctl" schema --out-dir docs >/dev/null
echo "wrote docs/cli.md, docs/openapi.json and the schemas"
