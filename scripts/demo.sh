#!/usr/bin/env bash
# `make demo`: start a full lab, run the whole suite against it, fill and validate a
# checklist from the results, and point at the report. Leaves the lab running when
# KAIC_DEMO_KEEP_LAB=1 (stop it with `kaic lab down --name demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
KAIC=${KAIC:-.venv/bin/kaic}
LAB=${KAIC_DEMO_LAB:-demo}
OUT=${KAIC_DEMO_OUT:-demo-results}
WITH=${KAIC_DEMO_WITH:-kueue-controller,node-autoscaler,prometheus,prometheus-adapter}

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

cleanup() {
  if [ "${KAIC_DEMO_KEEP_LAB:-0}" != 1 ]; then
    step "stopping the lab"
    "$KAIC" lab down --name "$LAB" || true
  fi
}
trap cleanup EXIT

step "the catalog: what changed from v1.35 to v1.36"
"$KAIC" catalog diff 1.35 1.36

step "starting the lab '$LAB' (real control plane, simulated GPUs; with $WITH)"
"$KAIC" lab up --name "$LAB" --with "$WITH"
"$KAIC" lab status --name "$LAB"
KUBECONFIG_PATH=$("$KAIC" lab kubeconfig --name "$LAB")

step "running the suite against the lab"
rm -rf "$OUT"
mkdir -p "$OUT"
set +e
"$KAIC" run --kubeconfig "$KUBECONFIG_PATH" --output-dir "$OUT/bundle" \
  --autoscaler-node-pool-label kaic.io/autoscaled-pool=true \
  --autoscaler-pool-taint kaic.io/autoscaled-pool=true:NoSchedule
rc=$?
set -e
echo "kaic run exited with $rc" >&2

step "the checklist: init, fill from the results, validate offline"
version=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['catalog_version'])" \
  "$OUT/bundle/run.json")
product="$OUT/v$version/kaic-lab"
# The metadata below describes the demo lab; a vendor writes its own.
"$KAIC" checklist init --version "$version" --dir "$product" --vendor "kaic demo" \
  --platform "kaic lab" --platform-version "$(git describe --always 2>/dev/null || echo dev)" \
  --website-url "https://kaic.example/lab" --repo-url "https://kaic.example/lab/src" \
  --documentation-url "https://kaic.example/lab/docs" \
  --product-logo-url "https://kaic.example/lab/logo.svg" \
  --description "A local lab cluster of real Kubernetes binaries with simulated GPUs." \
  --contact-email "lab@kaic.example" \
  --k8s-conformance-url "https://github.com/cncf/k8s-conformance/tree/master/v$version/kaic-lab" \
  --force
"$KAIC" checklist fill "$product/PRODUCT.yaml" --results "$OUT/bundle"
set +e
"$KAIC" checklist validate "$product/PRODUCT.yaml" --offline
set -e

step "done"
echo "report:    $OUT/bundle/report.html (and report.md)" >&2
echo "artifacts: $OUT/bundle/{junit.xml,results.json,e2e.log,evidence/}" >&2
echo "checklist: $product/PRODUCT.yaml" >&2
exit "$rc"
