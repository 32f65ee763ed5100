#!/usr/bin/env bash
# Build the lab's node autoscaler: Karpenter (sigs.k8s.io/karpenter) with its kwok
# cloud provider (the `kwok/` main package of the module), from the Go module proxy.
#
# Usage: lab/extras/karpenter.sh [KUBE_VERSION]   (the argument is accepted for
# build-extras.sh; one Karpenter release serves every lab version)
# Output: $KAIC_CACHE/karpenter-<version>/bin/karpenter-kwok and its CRDs in
# .../crds (default ~/.cache/kaic), built only when missing.
# NOTE: kubernetes/autoscaler's cluster-autoscaler (with its kwok provider) is not
# served by the module proxy this project can reach, so the lab uses Karpenter, the
# other upstream node autoscaler with a kwok provider. v1.14.1 is the newest release
# whose go.mod accepts the machine's Go 1.26.8 (v1.15.0 needs 1.26.9): the build uses
# the local toolchain only (GOTOOLCHAIN=local), no toolchain is downloaded.
set -euo pipefail
VERSION=${KAIC_KARPENTER_VERSION:-v1.14.1}
CACHE=${KAIC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kaic}
OUT="$CACHE/karpenter-$VERSION"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
if [ -x "$OUT/bin/karpenter-kwok" ] && [ "$(cat "$OUT/bin/.version" 2>/dev/null)" = "$VERSION+loopback" ]; then
  echo "karpenter $VERSION is up to date in $OUT"
  exit 0
fi
mkdir -p "$OUT/bin" "$OUT/src" "$OUT/crds"
cd "$OUT/src"
rm -f go.mod go.sum
go mod init kaic.invalid/lab/karpenter >/dev/null
go get "sigs.k8s.io/karpenter@$VERSION"
moddir=$(go list -m -f '{{.Dir}}' sigs.k8s.io/karpenter)
# The lab's network rule: every process listens on loopback only. Karpenter binds its
# metrics and health endpoints to ":<port>" (all interfaces). The build uses a copy of
# the module in which exactly those two addresses become 127.0.0.1 (Go refuses build
# overlays of files in the module cache, hence the copy and a replace directive).
rm -rf karpenter && cp -r "$moddir" karpenter && chmod -R u+w karpenter
sed -i 's/fmt.Sprintf(":%d", options.FromContext(ctx).\(MetricsPort\|HealthProbePort\))/fmt.Sprintf("127.0.0.1:%d", options.FromContext(ctx).\1)/' \
  karpenter/pkg/operator/operator.go
[ "$(grep -c '"127.0.0.1:%d"' karpenter/pkg/operator/operator.go)" = 2 ] || {
  echo "karpenter.sh: could not bind Karpenter's endpoints to loopback (source changed?)" >&2; exit 1; }
go mod edit -replace=sigs.k8s.io/karpenter=./karpenter
start=$(date +%s)
go build -trimpath -ldflags "-s -w" -o "$OUT/bin/karpenter-kwok.new" sigs.k8s.io/karpenter/kwok
mv "$OUT/bin/karpenter-kwok.new" "$OUT/bin/karpenter-kwok"
cp "$moddir"/kwok/charts/crds/*.yaml "$moddir"/kwok/apis/crds/*.yaml "$OUT/crds/"
chmod u+w "$OUT/crds/"*.yaml
echo "$VERSION+loopback" > "$OUT/bin/.version"
echo "built karpenter $VERSION (kwok provider) in $(( $(date +%s) - start ))s into $OUT"
