package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vwire/vwire/registry/store/kubestore/kubetest"
)

// kubeRelayPort is where the registry's namespace reaches the API server.
const kubeRelayPort = "127.0.0.1:6443"

// TestKubectlServiceConnect: the registry keeps its records in the
// Kubernetes API (kubetest, a real API server with the project's CRDs); the
// network service is created with `kubectl apply` only (the endpoint does
// not register it), the endpoint registered through the manager shows in
// `kubectl get`, and a client's Request for the service succeeds, traffic
// crossing the vWire both ways.
func TestKubectlServiceConnect(t *testing.T) {
	kubectlBin := os.Getenv("VWIRE_KUBECTL")
	if kubectlBin == "" {
		var err error
		if kubectlBin, err = exec.LookPath("kubectl"); err != nil {
			t.Skip("kubectl is not installed (.ci/run installs Debian's kubernetes-client)")
		}
	}
	api := kubetest.Start(t)
	api.InstallCRDs(t, "../../deployments/kubernetes/crd-networkservices.yaml", "../../deployments/kubernetes/crd-networkserviceendpoints.yaml")
	const namespace = "vwire-e2e"
	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), kubectlBin, append([]string{"--kubeconfig", api.Kubeconfig(t), "--namespace", namespace}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	kubectl("apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata:\n  name: kube-icmp\nspec:\n  payload: IP\n", "apply", "-f", "-")

	l, m := newMesh(t, MeshOptions{
		Nodes: 1,
		BeforeStart: func(m *Mesh) {
			Relay(m.Lab, m.Nodes[0].Netns, kubeRelayPort, api.Addr())
			m.Opts.RegistryArgs = []string{"--store", "kubernetes", "--kubeconfig", api.KubeconfigVia(t, kubeRelayPort), "--namespace", namespace}
		},
	})
	n := m.Nodes[0]
	clientNS, epNS := l.Netns("nsc1"), l.Netns("nse1")
	before := l.MustSnapshot()

	ep := n.StartICMPResponder(epNS, EndpointOptions{Name: "kube-nse", Service: "kube-icmp", CIDR: "172.16.7.0/24", Args: []string{"--register-service=false"}})
	if _, ok := ep.FindLogLine("registered network service"); ok {
		t.Fatalf("%s registered the service itself; the test wants it from kubectl only", ep)
	}
	if out := kubectl("", "get", "networkserviceendpoints", "-o", "name"); !strings.Contains(out, "/kube-nse") {
		t.Errorf("kubectl get networkserviceendpoints does not list the endpoint the manager registered:\n%s", out)
	}

	url := "kernel://kube-icmp/nsm-1"
	c := n.StartNSC(clientNS, "nsc1", url)
	connect(t, l, c, clientNS, epNS, url)
	requireVwireLinks(t, clientNS, epNS)

	stopClient(t, c)
	l.WaitNoLeak(cleanupTimeout, before)
}
