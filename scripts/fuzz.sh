#!/usr/bin/env bash
# Fuzzes every parser of outside input (fuzz/fuzz_targets: webhook bodies, signature headers,
# SimplyBook API responses, bank statements) with cargo-fuzz and libFuzzer.
#   scripts/fuzz.sh                 600 s per target (the long run)
#   scripts/fuzz.sh 15              15 s per target (what CI runs)
#   scripts/fuzz.sh 60 bank_statement webhook_payload
# The machine's stable toolchain runs in nightly mode (RUSTC_BOOTSTRAP=1) for the sanitizer
# flags cargo-fuzz passes; its AddressSanitizer runtime ships with stable. New inputs go to a
# temporary corpus (fuzz/corpus holds the seeds); a crash is copied to fuzz/artifacts/<target>/
# and fails the run: turn it into a regression test next to the parser, then fix the parser.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-600}
case "$secs" in
  '' | *[!0-9]*) echo "fuzz.sh: the first argument is seconds per target, not \"$secs\"" >&2; exit 64 ;;
esac
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(webhook_payload simplybook_callback signature_headers simplybook_api bank_statement)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/billing-tracker/target}/fuzz"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# fuzz/Cargo.lock is committed: fail rather than rewrite it (update it with `cargo update`).
cargo metadata --locked --format-version 1 >/dev/null
cargo fuzz build --release
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
  echo "--- $t (${secs}s)"
  if ! cargo fuzz run --release "$t" "$work/corpus/$t" "corpus/$t" -- \
      -max_total_time="$secs" -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 \
      -timeout=10 -rss_limit_mb=2048 2>"$work/$t.log"; then
    mkdir -p "artifacts/$t"
    cp "$work/artifacts/$t/"* "artifacts/$t/" 2>/dev/null || true
    tail -n 40 "$work/$t.log" >&2
    failed+=("$t")
  fi
  grep -E '^stat::(number_of_executed_units|new_units_added)' "$work/$t.log" | tr '\n' ' ' || true
  echo
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in ${failed[*]}; inputs in fuzz/artifacts/" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${secs}s each, no crash"
