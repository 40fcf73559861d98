#!/usr/bin/env bash
# Builds spire-server and spire-agent (the versions pinned in tools/go.mod) into a
# cache directory and prints that directory. Skips the build when both binaries are
# already there. A cold build takes 10-20 minutes on 2 cores, plus about 2.5
# minutes to download the modules the first time.
#
#   tools/install.sh [DIR]    (default: $VWIRE_TOOLS_BIN or
#                              $HOME/.cache/vwire-tools/spire-v1.13.3/bin)
set -euo pipefail

SPIRE_VERSION=v1.13.3
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-${VWIRE_TOOLS_BIN:-${HOME}/.cache/vwire-tools/spire-${SPIRE_VERSION}/bin}}"

# The pinned version must be what go.mod says, or the cache directory name lies.
if ! grep -q "github.com/spiffe/spire ${SPIRE_VERSION}" "$here/go.mod"; then
	echo "install.sh: tools/go.mod does not pin github.com/spiffe/spire ${SPIRE_VERSION}" >&2
	exit 1
fi

if [ -x "$bin/spire-server" ] && [ -x "$bin/spire-agent" ]; then
	echo "$bin"
	exit 0
fi

# spire-server's sqlite datastore (github.com/mattn/go-sqlite3) needs cgo.
if [ "${CGO_ENABLED:-1}" != 1 ] || ! command -v "${CC:-gcc}" >/dev/null; then
	echo "install.sh: building SPIRE needs cgo and a C compiler (${CC:-gcc}; apt-get install gcc)" >&2
	exit 1
fi

mkdir -p "$bin"
echo "install.sh: building spire-server and spire-agent ${SPIRE_VERSION} into $bin (cold: 10-20 min)" >&2
start=$(date +%s)
# Build into a temporary directory and move into place, so an interrupted build
# never leaves a half-populated cache that the check above would accept.
tmp="$(mktemp -d "$bin/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(cd "$here" && GOFLAGS="${GOFLAGS:-} -buildvcs=false" GOBIN="$tmp" CGO_ENABLED=1 \
	go install -trimpath github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent)
mv -f "$tmp/spire-server" "$tmp/spire-agent" "$bin/"
echo "install.sh: built in $(($(date +%s) - start))s" >&2
echo "$bin"
