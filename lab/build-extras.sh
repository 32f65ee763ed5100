#!/usr/bin/env bash
# Build the lab's optional upstream programs (cluster-autoscaler, operators,
# Prometheus, ...) when missing: runs every lab/extras/*.sh with the Kubernetes
# version as argument. Each script is idempotent and builds into $KAIC_CACHE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
K8S=${1:-${KAIC_KUBE_VERSION:-v1.36.2}}
shopt -s nullglob
for script in "$here"/extras/*.sh; do
  echo "== $(basename "$script" .sh)"
  bash "$script" "$K8S"
done
