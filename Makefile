# vwire — see README.md.
GO       ?= go
BIN      := bin/vwire
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
STATE    ?= $(CURDIR)/.vwire
PKGS     := ./...

IMAGE    ?= ghcr.io/vwire/vwire:latest

SPIRE_BIN_DIR ?= $(HOME)/.cache/vwire-tools/spire-v1.13.3/bin
KUBE_APISERVER_BIN ?= $(HOME)/.cache/vwire-tools/kube-apiserver-v1.37.2/bin/kube-apiserver

.PHONY: build test lint run run-registry clean fuzz docker test-spire test-kube-rbac test-vpp soak soak-vpp bench

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/vwire

# The test command the README gives and CI runs.
test:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# The quick start (as root): `vwire node`, an icmp-responder and a client in
# network namespaces; the client pings the endpoint across its vWire.
# Ctrl-C stops everything and removes the namespaces.
run: build
	./scripts/quickstart.sh $(STATE)

# A registry alone, with the architecture document's examples applied.
run-registry: build
	./scripts/registry-examples.sh $(STATE)

# Every fuzz target for FUZZTIME each; crashers land in testdata/fuzz and
# become regression cases that `make test` runs.
FUZZTIME ?= 30s
FUZZ_TARGETS := FuzzDecode:./registry/manifest FuzzSelect:./manager FuzzParse:./mechanisms/nscurl \
	FuzzParse:./mechanisms/inodeurl FuzzFromMechanism:./mechanisms/kernel FuzzFromMechanism:./mechanisms/memif \
	FuzzFromMechanism:./mechanisms/vxlan FuzzFromMechanism:./mechanisms/wireguard FuzzFromMechanism:./mechanisms/ipsec
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== $${t%%:*} in $${t#*:}"; \
		$(GO) test -run='^$$' -fuzz="^$${t%%:*}$$" -fuzztime=$(FUZZTIME) "$${t#*:}"; \
	done

# vwire with every identity from a real SPIRE v1.13.3 (root; the first
# build of spire-server and spire-agent takes 10-20 minutes, then it is cached).
test-spire:
	./tools/install.sh $(SPIRE_BIN_DIR) >/dev/null
	SPIRE_BIN_DIR=$(SPIRE_BIN_DIR) $(GO) test -v -count=1 -timeout 15m ./test/spire/

# The registry on the Kubernetes store under the deployments' Role, against a
# real kube-apiserver v1.37.2 with RBAC (built once from k8s.io/kubernetes by
# tools/kube-apiserver.sh, then cached).
test-kube-rbac:
	./tools/kube-apiserver.sh $(dir $(KUBE_APISERVER_BIN)) >/dev/null
	KUBE_APISERVER_BIN=$(KUBE_APISERVER_BIN) $(GO) test -v -count=1 -timeout 10m -run '^TestRegistryRBAC$$' ./cmd/vwire/

# The VPP dataplane against a real VPP (root): set VPP_BIN (and VPP_PLUGIN_PATH
# when the plugins are not in VPP's default place). Without VPP_BIN the tests skip.
# Then the restart suites and the soak on two VPP nodes (test/e2e).
test-vpp:
	@[ -n "$(VPP_BIN)" ] || { echo "test-vpp: set VPP_BIN to a vpp binary (and VPP_PLUGIN_PATH)"; exit 1; }
	VPP_BIN=$(VPP_BIN) VPP_PLUGIN_PATH=$(VPP_PLUGIN_PATH) $(GO) test -v -count=1 -timeout 30m ./forwarder/vpp/ ./binapi/
	VPP_BIN=$(VPP_BIN) VPP_PLUGIN_PATH=$(VPP_PLUGIN_PATH) $(GO) test -run '^$$' -bench . -benchtime 2x ./forwarder/vpp/
	VPP_BIN=$(VPP_BIN) VPP_PLUGIN_PATH=$(VPP_PLUGIN_PATH) $(GO) test -v -count=1 -timeout 40m -run 'TestRestartVPP|TestSoakVPP|TestMetricsNode|TestMixedKernelVPP' ./test/e2e/
	VPP_BIN=$(VPP_BIN) VPP_PLUGIN_PATH=$(VPP_PLUGIN_PATH) $(GO) test -v -count=1 -timeout 10m -run 'TestNSMEndpointAndClientVPP|TestNSMMemifVPP' ./test/nsmcompat/
	VPP_BIN=$(VPP_BIN) VPP_PLUGIN_PATH=$(VPP_PLUGIN_PATH) $(GO) test -v -count=1 -timeout 15m -run 'TestRunDataplane|TestRunVPPScale' ./internal/bench/

# `vwire bench` with its default set (root; a few minutes): Request→vWire-up
# latency, heal time, registry Find at 10k and 100k endpoints, iperf3 across
# vWires, each next to its baseline. With VPP_BIN (and VPP_PLUGIN_PATH) it
# also measures memif packets/s, VPP's remote vWires and VPP vWires at scale
# (vpp-scale: 200 local memif, VXLAN and WireGuard vWires, next to a plain
# loop of VPP API calls); with ETCD_ENDPOINTS (an etcd cluster's
# client URLs) Find on the etcd store too. The table goes to stdout, JSON
# to $(STATE)/bench.json.
bench: build
	@mkdir -p $(STATE)
	VPP_BIN=$(VPP_BIN) VPP_PLUGIN_PATH=$(VPP_PLUGIN_PATH) ETCD_ENDPOINTS=$(ETCD_ENDPOINTS) ./$(BIN) bench --json $(STATE)/bench.json

# The soak of the heal issue at full size (root): 10,000 Request/Close
# cycles and 1,000 concurrent vWires, after which every process's
# goroutines, descriptors and memory are back to their baseline and no
# link or route is left. `make test` runs it reduced.
soak:
	VWIRE_SOAK=1 $(GO) test -v -count=1 -timeout 90m -run '^TestSoak$$' ./test/e2e/

# The same soak at full size on two VPP nodes (root, VPP_BIN): 10,000
# Request/Close cycles and 1,000 concurrent memif vWires, then 1,000
# concurrent KERNEL vWires (the af_packet trunk), then every daemon's and
# VPP's goroutines, descriptors and memory back to baseline and every VPP
# holding what it held before.
soak-vpp:
	@[ -n "$(VPP_BIN)" ] || { echo "soak-vpp: set VPP_BIN to a vpp binary (and VPP_PLUGIN_PATH)"; exit 1; }
	VWIRE_SOAK=1 VPP_BIN=$(VPP_BIN) VPP_PLUGIN_PATH=$(VPP_PLUGIN_PATH) $(GO) test -v -count=1 -timeout 120m -run '^TestSoakVPP$$' ./test/e2e/

# The image (needs a Docker engine; CI has none, so the Dockerfile is checked by review).
docker:
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean:
	rm -rf bin $(STATE)
