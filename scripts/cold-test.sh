#!/usr/bin/env bash
# `make cold-test`: what a new user's `git clone` + `make test` does on a fresh machine.
# Clones the committed HEAD into a temporary directory and runs `make test` there with
# empty caches (kaic's, Go's module and build caches, no pip cache), so that nothing
# already on this machine helps; prints the wall time of each phase: pip, the module
# graph, each upstream program, each test tier, and the whole.
#
# Environment: KAIC_COLD_DIR (where to work; default a new /tmp/kaic-cold.XXXXXX),
# KAIC_COLD_KEEP=1 (keep it afterwards, e.g. to look at logs).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=${KAIC_COLD_DIR:-$(mktemp -d /tmp/kaic-cold.XXXXXX)}
keep=${KAIC_COLD_KEEP:-0}   # read now: every KAIC_* variable is unset below
mkdir -p "$work"
log="$work/cold-test.log"
cleanup() {
  if [ "$keep" != 1 ]; then
    chmod -R u+w "$work" 2>/dev/null || true
    rm -rf "$work"
  else
    echo "cold-test: kept $work (log: $log)" >&2
  fi
}
trap cleanup EXIT

git clone -q --no-local "$src" "$work/kaic"
echo "cold-test: HEAD $(git -C "$work/kaic" rev-parse --short HEAD) in $work/kaic" | tee "$log"
# The tests read the official templates from ../shared beside the checkout.
shared=$(cd "$src/.." && pwd)/shared
if [ -d "$shared" ]; then ln -s "$shared" "$work/shared"; fi

for v in $(env | grep -o '^KAIC_[A-Z_]*' || true); do unset "$v"; done
export KAIC_CACHE="$work/cache/kaic" GOMODCACHE="$work/cache/go-mod" GOCACHE="$work/cache/go-build"
export GOPATH="$work/go" XDG_CACHE_HOME="$work/cache/xdg" PIP_NO_CACHE_DIR=1
export PIP_CONFIG_FILE=/dev/null
cd "$work/kaic"

phases=()
phase() {
  local name=$1; shift
  local start=$SECONDS rc=0
  echo "cold-test: == $name: $*" | tee -a "$log"
  "$@" 2>&1 | tee -a "$log" || rc=${PIPESTATUS[0]}
  phases+=("$(printf '%-28s %6d s' "$name" $((SECONDS - start)))")
  if [ "$rc" != 0 ]; then
    echo "cold-test: $name FAILED (exit $rc)" | tee -a "$log"
    summary
    exit "$rc"
  fi
}
summary() {
  echo
  echo "cold-test: phase times (wall)"
  printf '  %s\n' "${phases[@]}"
  grep -E '^kaic: [a-z0-9-]+: (built .* in [0-9]+ s|resolving|module graph)' "$log" \
    | sed 's/^kaic: /  go: /' || true
  grep -E '^test tiers: ' "$log" | sed 's/^/  /' || true
  echo "  total                        $(printf '%6d' "$SECONDS") s"
}

phase "pip (make install)" make install
phase "lab programs (kaic lab build)" make lab-binaries
phase "make test" make test
summary | tee -a "$log"
