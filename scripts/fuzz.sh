#!/usr/bin/env bash
# Fuzzes the exposition parser, the YAML/JSON policy loader, the MADS request decoder, the
# OTLP push reader and the streaming merge with libFuzzer (cargo-fuzz), each for a bounded time:  scripts/fuzz.sh [seconds-per-target, default 60]
# cargo-fuzz is installed into .tools/ (not committed); the stable toolchain is used with
# RUSTC_BOOTSTRAP=1 for the sanitizer flags. Corpora grow in fuzz/corpus/ (ignored), starting
# from the small committed seeds in fuzz/seeds/. A crash leaves its input in fuzz/artifacts/ and
# fails the script; once fixed, turn the input into a unit test next to the code it broke.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
if ! [ -x .tools/bin/cargo-fuzz ]; then
  echo "installing cargo-fuzz into .tools ..." >&2
  cargo install --quiet --locked --root .tools cargo-fuzz
fi
export PATH="$PWD/.tools/bin:$PATH" RUSTC_BOOTSTRAP=1
for t in exposition policy_loader mads_request otlp_push stream_merge; do
  # a target that does not build is a failure, not a silent skip
  cargo fuzz build --fuzz-dir fuzz "$t" >/dev/null
  mkdir -p "fuzz/corpus/$t"
  cp -n fuzz/seeds/"$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
  echo "=== fuzzing $t for ${SECS}s ===" >&2
  dict=()
  [ "$t" = policy_loader ] && dict=(-dict=fuzz/policy.dict)
  log="fuzz/artifacts/$t.log"
  mkdir -p fuzz/artifacts
  status=0
  cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- "${dict[@]}" \
    -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|thread '.*' panicked|Test unit written)" "$log" || true
  if ls fuzz/artifacts/"$t"/crash-* >/dev/null 2>&1; then
    echo "crash found in $t: fuzz/artifacts/$t/" >&2; exit 1
  fi
  # any other failure (a bad dictionary, an option libFuzzer refuses) is a failure too
  if [ "$status" -ne 0 ]; then
    echo "fuzzing $t failed (exit $status); see $log" >&2; tail -5 "$log" >&2; exit 1
  fi
done
echo "fuzzing done: ${SECS}s per target, no crash"
