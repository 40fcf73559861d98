#!/usr/bin/env bash
# Quick start: a local mesh on the embedded defaults. `vwire node` (registry,
# manager, forwarder) runs in one network namespace, an icmp-responder
# endpoint in a second and a client in a third; the client requests the
# `icmp` service, gets a vWire, and pings the endpoint across it.
# Needs root (network namespaces). Runs until Ctrl-C, then cleans up.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "quickstart: needs root (it creates network namespaces)" >&2; exit 1; }
# What it needs from the system: iproute2 and ping (Debian/Ubuntu package names).
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v ping >/dev/null || missing+=(iputils-ping)
if [ ${#missing[@]} -gt 0 ]; then
	echo "quickstart: installing ${missing[*]}"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
state=$(realpath -m "${1:-$PWD/.vwire}")
vwire=$(realpath "${VWIRE:-$PWD/bin/vwire}")
once=${QUICKSTART_ONCE:-}
mkdir -p "$state"
nsnode=vwire-node nsnse=vwire-nse nsnsc=vwire-nsc
pids=()

cleanup() {
	trap - EXIT INT TERM
	# Client first (it closes its vWire), then the endpoint, then the node.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	for ns in $nsnsc $nsnse $nsnode; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

for ns in $nsnode $nsnse $nsnsc; do
	ip netns del "$ns" 2>/dev/null || true
	ip netns add "$ns"
	ip -n "$ns" link set lo up
done

common=(--state-dir "$state")
ip netns exec $nsnode "$vwire" node "${common[@]}" --node-name quickstart \
	--socket "$state/nsm.sock" --forwarder-socket "unix://$state/forwarder.sock" \
	--registry-listen 127.0.0.1:5002 --manager-listen 127.0.0.1:5001 \
	--advertise-url tcp://127.0.0.1:5001 --dataplane "${DATAPLANE:-kernel}" ${VPP_BIN:+--vpp-bin "$VPP_BIN"} 2>"$state/node.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$state/forwarder.sock" ] && break; sleep 0.1; done

# The workloads take their identity from the node's SPIFFE Workload API,
# as NSM workloads would from SPIRE.
export SPIFFE_ENDPOINT_SOCKET=unix://$state/workload-api.sock
for _ in $(seq 100); do [ -S "$state/workload-api.sock" ] && break; sleep 0.1; done
ip netns exec $nsnse "$vwire" nse icmp-responder --service icmp --name icmp-responder \
	--connect-to "unix://$state/nsm.sock" --listen "unix://$state/icmp-responder.sock" 2>"$state/nse.log" &
pids+=($!)

ip netns exec $nsnsc "$vwire" nsc --connect-to "unix://$state/nsm.sock" \
	kernel://icmp/nsm-1 >"$state/nsc.out" 2>"$state/nsc.log" &
pids+=($!)

# The endpoint's address is the client interface's route.
dst=""
for _ in $(seq 150); do
	dst=$( (ip -n $nsnsc -4 route show dev nsm-1 2>/dev/null || true) | awk '{print $1; exit}' | cut -d/ -f1)
	[ -n "$dst" ] && break
	sleep 0.1
done
if [ -z "$dst" ]; then
	echo "quickstart: the client got no vWire; logs in $state/*.log" >&2
	tail -n 20 "$state"/*.log >&2
	exit 1
fi
echo "== connection (vwire nsc) =="
cat "$state/nsc.out"
echo "== client interface =="
ip -n $nsnsc -br addr show dev nsm-1
echo "== ping from the client across the vWire to the endpoint ($dst) =="
ip netns exec $nsnsc ping -c 3 -i 0.3 "$dst"
if [ -n "$once" ]; then exit 0; fi
echo "mesh running (logs in $state); try: ip netns exec $nsnode $vwire get nse --state-dir $state --registry 127.0.0.1:5002"
echo "Ctrl-C to stop and clean up"
wait "${pids[0]}"
