#!/usr/bin/env bash
# Build the Kueue controller (sigs.k8s.io/kueue/cmd/kueue) from the Go module proxy and
# keep its CRD manifests beside it, for the lab's gang-scheduling / AI-operator component.
#
# Usage: lab/extras/kueue.sh [KUBE_VERSION]   (default: $KAIC_KUBE_VERSION or v1.36.2)
# Output: $KAIC_CACHE/kueue-<kueue version>-k8s-<kube version>/{bin/kueue,crds/*.yaml}
# Idempotent: does nothing when the binary is present and stamped with the version.
#
# A wrapper module pins the Kubernetes staging modules to v0.<minor>.<patch> of the
# lab's version (and k8s.io/kubernetes itself to the lab's version) so the Go build
# cache is shared with the control-plane build of lab/build-k8s.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/staging.sh"
K8S=${1:-${KAIC_KUBE_VERSION:-v1.36.2}}
KUEUE=${KAIC_KUEUE_VERSION:-v0.19.2}
CACHE=${KAIC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kaic}
DEST="$CACHE/kueue-$KUEUE-k8s-$K8S"
OUT="$DEST/bin"
SRC="$DEST/src"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"

minor=${K8S#v1.}; minor=${minor%%.*}
if [ "$minor" -lt 36 ]; then
  # NOTE: Kueue v0.19 is built on Kubernetes 0.36; older labs need an older Kueue
  # (v0.15.x for 1.34/1.35), set with KAIC_KUEUE_VERSION.
  case "$KUEUE" in v0.19.*) echo "kueue $KUEUE needs Kubernetes >= v1.36 (set KAIC_KUEUE_VERSION)" >&2; exit 2;; esac
fi
stg="v0.${K8S#v1.}"

if [ -x "$OUT/kueue" ] && [ -f "$DEST/VERSION" ] && [ "$(cat "$DEST/VERSION")" = "$KUEUE" ] \
   && compgen -G "$DEST/crds/*.yaml" >/dev/null; then
  echo "kueue $KUEUE for $K8S is up to date in $OUT"
  exit 0
fi

mkdir -p "$OUT" "$SRC" "$DEST/crds"
cd "$SRC"
pinned="$here/versions/$K8S/kueue-$KUEUE"
if [ -f "$pinned/go.mod" ]; then
  # A pinned module graph for this pair of versions is kept in the repository.
  cp "$pinned/go.mod" "$pinned/go.sum" .
else
  rm -f go.mod go.sum
  go mod init kaic.invalid/lab/kueue >/dev/null
  go mod edit -go=1.26.0
  replace_staging_modules "$minor" "$stg"
  go get -tool "sigs.k8s.io/kueue/cmd/kueue@$KUEUE"
  # Same k8s.io/kubernetes as the control plane (Kueue asks for an earlier patch).
  go get "k8s.io/kubernetes@$K8S"
fi

moddir=$(go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)
rm -f "$DEST"/crds/*.yaml
cp "$moddir"/config/components/crd/bases/*.yaml "$DEST/crds/"
chmod u+w "$DEST"/crds/*.yaml

LD="-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE"
start=$(date +%s)
GOBIN="$OUT" go install -trimpath -ldflags "$LD" tool
echo "$KUEUE" > "$DEST/VERSION"
echo "built kueue $KUEUE for $K8S in $(( $(date +%s) - start ))s into $OUT"
