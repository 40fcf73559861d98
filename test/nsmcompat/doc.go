// Package nsmcompat runs Network Service Mesh's own workloads against
// vwire: NSM's sdk (v1.18.0) endpoint, client and registry client chains,
// built as NSM's cmd-nse-icmp-responder and cmd-nsc build them, with their
// default authorisation policies and descriptor passing on, as processes in
// network namespaces the tests make, against `vwire node` on the kernel
// dataplane (and on VPP with VPP_BIN: KERNEL, and MEMIF with gomemif peers
// standing in for sdk-vpp's workloads, memif_test.go) and against vwire's
// registry.
//
// The tests need root, iproute2 and ping, and skip saying so without them.
// The test binary is also the workloads' program: started with the first
// argument "nsmcompat-role", it runs one workload (roles_test.go) instead
// of the tests. NSM's sdk is imported by these tests only.
package nsmcompat
