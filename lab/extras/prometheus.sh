#!/usr/bin/env bash
# Build a real Prometheus server for the lab from its Go module
# (github.com/prometheus/prometheus/cmd/prometheus), used by the
# ai_service_metrics lab tests.
#
# Usage: lab/extras/prometheus.sh [KUBE_VERSION]   (the argument is ignored:
# Prometheus does not depend on the lab's Kubernetes version)
# Version: $KAIC_PROMETHEUS_VERSION, default v0.316.0 (= Prometheus 3.16.0; the Go
# module uses v0.3MM.P tags for release 3.MM.P). The binary lands in
# $KAIC_CACHE/prometheus-<version>/bin/prometheus and is only built when missing.
#
# Only the Kubernetes service discovery is compiled in (build tags
# remove_all_sd,enable_kubernetes_sd) and the web UI assets are left out: the lab
# uses the HTTP API only. This roughly halves the build.
set -euo pipefail
PROM=${KAIC_PROMETHEUS_VERSION:-v0.316.0}
CACHE=${KAIC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kaic}
OUT="$CACHE/prometheus-$PROM/bin"
SRC="$CACHE/prometheus-$PROM/src"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"

# Release number from the module version: v0.316.0 -> 3.16.0
minor=${PROM#v0.}; minor=${minor%%.*}
patch=${PROM##*.}
release="$(( minor / 100 )).$(( minor % 100 )).$patch"

if [ -x "$OUT/prometheus" ] && "$OUT/prometheus" --version 2>/dev/null | grep -q "version $release "; then
  echo "prometheus $release is up to date in $OUT"
  exit 0
fi

mkdir -p "$OUT" "$SRC"
cd "$SRC"
rm -f go.mod go.sum
go mod init kaic.invalid/lab/prometheus >/dev/null 2>&1
go get -tool "github.com/prometheus/prometheus/cmd/prometheus@$PROM"

V=github.com/prometheus/common/version
LD="-s -w -X $V.Version=$release -X $V.Revision=$PROM -X $V.Branch=HEAD"
LD="$LD -X $V.BuildUser=kaic -X $V.BuildDate=19700101-00:00:00"
start=$(date +%s)
GOBIN="$OUT" go install -trimpath -tags remove_all_sd,enable_kubernetes_sd -ldflags "$LD" tool
echo "built prometheus $release in $(( $(date +%s) - start ))s into $OUT"
"$OUT/prometheus" --version | head -1
