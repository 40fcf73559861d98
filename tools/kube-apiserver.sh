#!/usr/bin/env bash
# Builds kube-apiserver (k8s.io/kubernetes, the version pinned in
# tools/kube-apiserver/go.mod) into a cache directory and prints the
# binary's path. Skips the build when it is already there. A test tool only
# (TestRegistryRBAC runs it with --authorization-mode=RBAC); nothing of
# Kubernetes is part of vwire. A cold build took 24 minutes on 2 cores at a
# load average of 7 to 10 (go mod tidy took 12 s, most modules already in
# the module cache).
#
#   tools/kube-apiserver.sh [DIR]    (default: $HOME/.cache/vwire-tools/kube-apiserver-v1.37.2/bin)
set -euo pipefail

KUBE_VERSION=v1.37.2
here="$(cd "$(dirname "$0")" && pwd)/kube-apiserver"
bin="${1:-${HOME}/.cache/vwire-tools/kube-apiserver-${KUBE_VERSION}/bin}"

# The pinned version must be what go.mod says, or the cache directory name lies.
if ! grep -q "k8s.io/kubernetes ${KUBE_VERSION}" "$here/go.mod"; then
	echo "kube-apiserver.sh: tools/kube-apiserver/go.mod does not pin k8s.io/kubernetes ${KUBE_VERSION}" >&2
	exit 1
fi

if [ -x "$bin/kube-apiserver" ]; then
	echo "$bin/kube-apiserver"
	exit 0
fi

mkdir -p "$bin"
echo "kube-apiserver.sh: building kube-apiserver ${KUBE_VERSION} into $bin" >&2
start=$(date +%s)
# Build into a temporary directory and move into place, so an interrupted
# build never leaves a half-written binary that the check above would accept.
# The version stamped in (/version, kubectl version) is the module's, as a
# release build's.
tmp="$(mktemp -d "$bin/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(cd "$here" && GOFLAGS="${GOFLAGS:-} -buildvcs=false" \
	go build -trimpath -o "$tmp/kube-apiserver" \
		-ldflags "-X k8s.io/component-base/version.gitVersion=${KUBE_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" \
		k8s.io/kubernetes/cmd/kube-apiserver)
mv -f "$tmp/kube-apiserver" "$bin/"
echo "kube-apiserver.sh: built in $(($(date +%s) - start))s" >&2
echo "$bin/kube-apiserver"
