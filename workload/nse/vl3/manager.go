package vl3

import "github.com/vwire/vwire/workload/nse/managerclient"

// Manager is the node manager's NetworkService API, as Peers uses it: the
// vL3 endpoint is a client of its own manager for its peer vWires.
type Manager = managerclient.Manager
