// Package e2e runs the real vwire binary in Linux network namespaces and
// checks vWires the way a user would: with ping, and with the interfaces each
// namespace holds before, during and after a scenario.
//
// A Lab is one test's world. A "fabric" namespace holds a bridge that stands
// for the network between nodes; each node is a namespace with a veth on that
// bridge, an address in a private /24 and a default route via the bridge, and
// runs vwire's daemons (a Mesh); each workload, client or endpoint, is a plain
// namespace with only lo. Traffic stays on loopback or inside the namespaces
// the test made, and every namespace, process and file a Lab made is removed
// when its test ends, also when it fails; the tail of every process log is
// printed when it fails.
//
// The tests need root, iproute2 and ping; they skip, saying why, without
// them. Run them with
//
//	go test -v ./test/e2e/
//
// and the benchmarks (which need iperf3) with
//
//	go test -run '^$' -bench . ./test/e2e/
//
// TestMain builds cmd/vwire once; set VWIRE_E2E_BIN to test a binary built
// elsewhere instead. Set VWIRE_E2E_KEEP=1 to keep each test's directory (logs, state) for a
// look afterwards.
package e2e
