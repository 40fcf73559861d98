#!/usr/bin/env bash
# A registry on the embedded defaults, authoritative for the
# architecture document's domains, with its examples applied and listed.
# Runs in the foreground; Ctrl-C stops it.
set -euo pipefail
state=${1:-$PWD/.vwire}
vwire=${VWIRE:-$PWD/bin/vwire}
addr=${VWIRE_REGISTRY:-127.0.0.1:5002}
mkdir -p "$state"

"$vwire" registry --state-dir "$state" --listen "$addr" \
	--domain finance.example.com --domain sales.example.com --domain marketing.example.com &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT INT TERM

for _ in $(seq 50); do
	"$vwire" get ns --state-dir "$state" --registry "$addr" >/dev/null 2>&1 && break
	sleep 0.2
done
"$vwire" apply --state-dir "$state" --registry "$addr" -f deployments/examples/architecture/networkservices.yaml
"$vwire" get ns -o wide --state-dir "$state" --registry "$addr"
echo "registry running at $addr (state in $state); Ctrl-C to stop"
wait $pid
