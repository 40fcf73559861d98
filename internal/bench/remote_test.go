package bench

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestPlanRemote(t *testing.T) {
	noModule := errors.New("no such file or directory")
	names := func(cs []remoteCase) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.name+": "+c.skip)
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		kernelWG error
		vppBin   string
		iperf3   bool
		want     []string
	}{
		{name: "no module, no VPP", kernelWG: noModule, iperf3: true, want: []string{
			"vxlan, kernel: ",
			"wireguard, kernel module: " + noKernelWireGuard,
			"wireguard, userspace: ",
			"vxlan, VPP (ETHERNET payload): " + noVPP,
			"wireguard, VPP: " + noVPP,
		}},
		{name: "module and VPP", vppBin: "/usr/bin/vpp", iperf3: true, want: []string{
			"vxlan, kernel: ", "wireguard, kernel module: ", "wireguard, userspace: ",
			"vxlan, VPP (ETHERNET payload): ", "wireguard, VPP: ",
		}},
		{name: "no iperf3", vppBin: "/usr/bin/vpp", want: []string{
			"vxlan, kernel: " + noIperf3, "wireguard, kernel module: " + noIperf3, "wireguard, userspace: " + noIperf3,
			"vxlan, VPP (ETHERNET payload): " + noIperf3, "wireguard, VPP: " + noIperf3,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := names(planRemote(tc.kernelWG, tc.vppBin, tc.iperf3)); !slices.Equal(got, tc.want) {
				t.Errorf("planRemote:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestRemoteVariants checks that each variant names a way the nodes can
// be started and a check that the vWire went that way.
func TestRemoteVariants(t *testing.T) {
	if v := remoteVariants[0]; v.vpp || v.wireguard != "off" {
		t.Errorf("the first variant, the baseline, is %+v: want kernel VXLAN", v)
	}
	for _, v := range remoteVariants {
		switch {
		case v.vpp && (v.vppIf == "" || v.wireguard != ""):
			t.Errorf("%s: on VPP with vppIf %q, wireguard %q", v.name, v.vppIf, v.wireguard)
		case !v.vpp && (v.link == "" || v.log == "" || !slices.Contains([]string{"off", "kernel", "userspace"}, v.wireguard)):
			t.Errorf("%s: kernel dataplane with link %q, log %q, wireguard %q", v.name, v.link, v.log, v.wireguard)
		}
		if v.payload != "IP" && v.payload != "ETHERNET" {
			t.Errorf("%s: payload %q", v.name, v.payload)
		}
	}
}

func TestMeshDataplaneArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    meshOptions
		want string
	}{
		{name: "default", want: "--dataplane kernel --wireguard off"},
		{name: "userspace", o: meshOptions{WireGuard: "userspace"}, want: "--dataplane kernel --wireguard userspace"},
		{name: "vpp", o: meshOptions{VPPBin: "/v/vpp", VPPPluginPath: "/v/plugins"},
			want: "--dataplane vpp --vpp-bin /v/vpp --vpp-state-dir /d/vpp --uplink eth0 --vpp-poll-sleep-usec 100 --vpp-plugin-path /v/plugins"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(tc.o.dataplaneArgs("/d/vpp"), " "); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestRemoteRows(t *testing.T) {
	cases := planRemote(errors.New("none"), "", true)
	results := []remoteResult{
		{remoteCase: cases[0], mbps: 1000, up: ms(10, 20, 30, 40)},
		{remoteCase: cases[1]},
		{remoteCase: cases[2], mbps: 250, up: ms(40, 60, 80, 100)},
		{remoteCase: cases[3]},
		{remoteCase: cases[4]},
	}
	rows := remoteRows(results)
	type want struct {
		name, skipped string
		value         float64
		base, ratio   float64 // 0: none
	}
	wants := []want{
		{name: "TCP across a remote vWire, vxlan, kernel (iperf3)", value: 1000},
		{name: "request→vWire-up, remote, vxlan, kernel, p50", value: 20},
		{name: "request→vWire-up, remote, vxlan, kernel, p99", value: 40},
		{name: "TCP across a remote vWire, wireguard, kernel module (iperf3)", skipped: noKernelWireGuard},
		{name: "request→vWire-up, remote, wireguard, kernel module", skipped: noKernelWireGuard},
		{name: "TCP across a remote vWire, wireguard, userspace (iperf3)", value: 250, base: 1000, ratio: 0.25},
		{name: "request→vWire-up, remote, wireguard, userspace, p50", value: 60, base: 20, ratio: 3},
		{name: "request→vWire-up, remote, wireguard, userspace, p99", value: 100, base: 40, ratio: 2.5},
		{name: "TCP across a remote vWire, vxlan, VPP (ETHERNET payload) (iperf3)", skipped: noVPP},
		{name: "request→vWire-up, remote, vxlan, VPP (ETHERNET payload)", skipped: noVPP},
		{name: "TCP across a remote vWire, wireguard, VPP (iperf3)", skipped: noVPP},
		{name: "request→vWire-up, remote, wireguard, VPP", skipped: noVPP},
	}
	if len(rows) != len(wants) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(wants), rows)
	}
	for i, w := range wants {
		r := rows[i]
		if r.Group != GroupRemote || r.Name != w.name || r.Skipped != w.skipped {
			t.Errorf("row %d: %s %q skipped %q; want remote %q skipped %q", i, r.Group, r.Name, r.Skipped, w.name, w.skipped)
			continue
		}
		if w.skipped != "" {
			continue
		}
		if r.Value != w.value {
			t.Errorf("%s: value %v, want %v", r.Name, r.Value, w.value)
		}
		switch {
		case w.base == 0 && r.Baseline != nil:
			t.Errorf("%s: baseline %v, want none", r.Name, *r.Baseline)
		case w.base != 0 && (r.Baseline == nil || *r.Baseline != w.base || r.BaselineName != "vxlan, kernel" || r.Ratio == nil || *r.Ratio != w.ratio):
			t.Errorf("%s: baseline %v %q ratio %v, want %v vxlan, kernel, %v×", r.Name, r.Baseline, r.BaselineName, r.Ratio, w.base, w.ratio)
		}
	}
}

// TestRemoteRowsFailures: a failed variant says so in its rows, and
// without a measured kernel VXLAN no row has a baseline.
func TestRemoteRowsFailures(t *testing.T) {
	cases := planRemote(nil, "/usr/bin/vpp", true)
	results := []remoteResult{
		{remoteCase: cases[0], err: errors.New("start the nodes: boom")},
		{remoteCase: cases[1], mbps: 900, up: ms(15)},
	}
	rows := remoteRows(results)
	if len(rows) != 5 {
		t.Fatalf("%d rows, want 5: %+v", len(rows), rows)
	}
	for _, r := range rows[:2] {
		if r.Skipped != "failed: start the nodes: boom" {
			t.Errorf("%s: skipped %q, want the failure", r.Name, r.Skipped)
		}
	}
	for _, r := range rows[2:] {
		if r.Skipped != "" || r.Baseline != nil || r.Value <= 0 {
			t.Errorf("%s: %+v, want a figure without baseline", r.Name, r)
		}
	}
}

func TestConfigRemote(t *testing.T) {
	c := DefaultConfig()
	c.Only = []string{GroupRemote}
	if err := c.Validate(); err != nil {
		t.Errorf("--only remote: %v", err)
	}
	c.RemoteRequests = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "at least 1") {
		t.Errorf("no remote Requests: %v, want a refusal", err)
	}
}
