#!/usr/bin/env bash
# Build the lab's optional upstream programs (cluster-autoscaler, operators,
# Prometheus) when missing. Filled in as those parts of the lab land.
set -euo pipefail
exit 0
