# Sourced by the lab's build scripts: replace every Kubernetes staging module in the
# go.mod of the current directory with its published tag, so that a wrapper module can
# build k8s.io/kubernetes (whose own go.mod maps them to ./staging, which the module
# zip lacks). Usage: replace_staging_modules MINOR STAGING_VERSION   (36 v0.36.2)
replace_staging_modules() {
  local minor=$1 stg=$2 m
  local mods="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
    cloud-provider cluster-bootstrap code-generator component-base component-helpers
    controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation
    endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy
    kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission
    sample-apiserver sample-cli-plugin sample-controller"
  if [ "$minor" -ge 36 ]; then mods="$mods cri-streaming streaming"; fi
  for m in $mods; do go mod edit -replace="k8s.io/$m=k8s.io/$m@$stg"; done
}
