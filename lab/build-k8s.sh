#!/usr/bin/env bash
# Build the lab's control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd) and the kwok controller from the Go module proxy.
#
# Usage: lab/build-k8s.sh [KUBE_VERSION]   (default: $KAIC_KUBE_VERSION or v1.36.2)
# Binaries land in $KAIC_CACHE/k8s-<version>/bin (default ~/.cache/kaic), outside
# the repository, and are only built when missing or not stamped with the version.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/staging.sh"
K8S=${1:-${KAIC_KUBE_VERSION:-v1.36.2}}
KWOK_VERSION=${KAIC_KWOK_VERSION:-v0.8.0}
KWOK_K8S_MINOR=36   # kwok v0.8.0 is built on k8s.io/* v0.36
CACHE=${KAIC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kaic}
OUT="$CACHE/k8s-$K8S/bin"
SRC="$CACHE/k8s-$K8S/src"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"

minor=${K8S#v1.}; minor=${minor%%.*}
stg="v0.${K8S#v1.}"

have_all=1
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok; do
  [ -x "$OUT/$b" ] || have_all=0
done
if [ "$have_all" = 1 ] && "$OUT/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes $K8S"; then
  echo "lab binaries for $K8S are up to date in $OUT"
  exit 0
fi

mkdir -p "$OUT" "$SRC"
cd "$SRC"
# A pinned go.mod/go.sum for this version is kept in the repository when present.
if [ -f "$here/versions/$K8S/go.mod" ]; then
  cp "$here/versions/$K8S/go.mod" "$here/versions/$K8S/go.sum" .
else
  rm -f go.mod go.sum
  go mod init kaic.invalid/lab/k8s >/dev/null
  go mod edit -go=1.26.0
  replace_staging_modules "$minor" "$stg"
  if [ "$minor" -le 34 ]; then go mod edit -godebug default=go1.24; fi
  go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S" \
    "k8s.io/kubernetes/cmd/kube-scheduler@$K8S" \
    "k8s.io/kubernetes/cmd/kubectl@$K8S"
  etcd=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/client/v3)
  go get -tool "go.etcd.io/etcd/server/v3@$etcd"
  # kwok shares the wrapper (and its compile cache) when it needs no newer k8s.io
  # libraries than this version; otherwise it is built from its own module below.
  if [ "$minor" -ge "$KWOK_K8S_MINOR" ]; then
    go get -tool "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  fi
fi

LD="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LD="$LD -X $p.gitVersion=$K8S -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
LD="$LD -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
start=$(date +%s)
GOBIN="$OUT" go install -trimpath -ldflags "$LD" tool
if [ -x "$OUT/server" ]; then mv "$OUT/server" "$OUT/etcd"; fi
if [ ! -x "$OUT/kwok" ]; then
  GOFLAGS=-buildvcs=false GOBIN="$OUT" go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi
echo "built lab binaries for $K8S in $(( $(date +%s) - start ))s into $OUT"
"$OUT/kube-apiserver" --version
