package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vwire/vwire/registry/store/etcdstore/etcdtest"
	"github.com/vwire/vwire/registry/store/kubestore/kubetest"
)

// TestRegistryEtcdTLS runs `vwire registry --store etcd` against an etcd
// that asks for client certificates: with --etcd-cert/--etcd-key/--etcd-ca
// it serves, and what it stores survives a second registry on the same
// etcd.
func TestRegistryEtcdTLS(t *testing.T) {
	srv := etcdtest.StartTLS(t)
	files := srv.TLS()
	state := t.TempDir()
	flags := []string{"--store", "etcd", "--etcd-endpoints", srv.Endpoints()[0], "--etcd-prefix", "/cli-tls/",
		"--etcd-cert", files.Cert, "--etcd-key", files.Key, "--etcd-ca", files.CA}
	c := startRegistry(t, state, flags...)
	stdin := "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata: {name: tls-service}\nspec: {payload: IP}\n"
	if _, errs, code := c.run(stdin, "apply", "-f", "-"); code != 0 {
		t.Fatalf("apply: exit %d: %s", code, errs)
	}
	second := startRegistry(t, state, flags...)
	if out := second.ok("get", "ns"); !strings.Contains(out, "tls-service") {
		t.Fatalf("second registry on the same etcd lists:\n%s", out)
	}
}

// TestRegistryStoreFlagErrors: a bad store flag stops `vwire registry` at
// once with one line that names the flag and the file.
func TestRegistryStoreFlagErrors(t *testing.T) {
	srv := etcdtest.StartTLS(t)
	files := srv.TLS()
	missing := filepath.Join(t.TempDir(), "missing.pem")
	etcd := []string{"registry", "--listen", "127.0.0.1:0", "--store", "etcd", "--etcd-endpoints", srv.Endpoints()[0]}
	c := cli{t: t, state: t.TempDir()}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "cert without key", args: append(etcd, "--etcd-cert", files.Cert), want: "--etcd-cert/--etcd-key/--etcd-ca: client certificate " + files.Cert + " given without its key"},
		{name: "missing cert", args: append(etcd, "--etcd-cert", missing, "--etcd-key", files.Key), want: missing + ": no such file"},
		{name: "missing CA", args: append(etcd, "--etcd-ca", missing), want: "CA file: open " + missing},
		{name: "CA is a key", args: append(etcd, "--etcd-ca", files.Key), want: "no PEM certificate"},
		{name: "no client certificate", args: append(etcd, "--etcd-ca", files.CA), want: "certificate required"},
		{name: "plain http with TLS files", args: []string{"registry", "--listen", "127.0.0.1:0", "--store", "etcd",
			"--etcd-endpoints", "http://127.0.0.1:1", "--etcd-ca", files.CA}, want: "must be https://127.0.0.1:1"},
		{name: "kubernetes outside a pod", args: []string{"registry", "--listen", "127.0.0.1:0", "--store", "kubernetes"}, want: "give --kubeconfig"},
		{name: "missing kubeconfig", args: []string{"registry", "--listen", "127.0.0.1:0", "--store", "kubernetes", "--kubeconfig", missing}, want: "--kubeconfig " + missing},
		{name: "unknown store", args: []string{"registry", "--listen", "127.0.0.1:0", "--store", "disk"}, want: `--store "disk"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := c
			c.t = t
			_, errs, code := c.run("", tc.args...)
			if code == 0 {
				t.Fatal("exit 0")
			}
			if !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Fatalf("stderr %q: want one line containing %q", errs, tc.want)
			}
		})
	}
}

// TestRegistryKubernetesStore runs `vwire registry --store kubernetes`
// against a real API server (kubetest) with the project's CRDs: an object
// created with kubectl is listed by `vwire get`, and an endpoint applied
// through the registry is listed by kubectl.
func TestRegistryKubernetesStore(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed (.ci/run installs Debian's kubernetes-client)")
	}
	api := kubetest.Start(t)
	api.InstallCRDs(t, "../../deployments/kubernetes/crd-networkservices.yaml", "../../deployments/kubernetes/crd-networkserviceendpoints.yaml")
	kubeconfig := api.Kubeconfig(t)
	const namespace = "vwire-e2e"
	c := startRegistry(t, t.TempDir(), "--store", "kubernetes", "--kubeconfig", kubeconfig, "--namespace", namespace)

	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), kubectl, append([]string{"--kubeconfig", kubeconfig, "--namespace", namespace}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	// kubectl apply and get first read the API's discovery, which the
	// extensions server alone cannot give (it does not serve /api, the
	// built-in kinds): kubectl sends the requests as they are instead.
	resources := "/apis/networkservicemesh.io/v1/namespaces/" + namespace + "/"
	run(`{"apiVersion": "networkservicemesh.io/v1", "kind": "NetworkService", "metadata": {"name": "kubectl-service"}, "spec": {"payload": "ETHERNET"}}`,
		"create", "--raw", resources+"networkservices", "-f", "-")
	deadline := time.Now().Add(30 * time.Second)
	for out := c.ok("get", "ns"); !strings.Contains(out, "kubectl-service"); out = c.ok("get", "ns") {
		if time.Now().After(deadline) {
			t.Fatalf("vwire get ns does not list the service applied with kubectl:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	nse := "apiVersion: networkservicemesh.io/v1\nkind: NetworkServiceEndpoint\nmetadata: {name: grpc-nse}\n" +
		"spec: {network_service_names: [kubectl-service], url: \"tcp://127.0.0.1:5999\", expiration_time: \"" +
		time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + "\"}\n"
	if _, errs, code := c.run(nse, "apply", "-f", "-"); code != 0 {
		t.Fatalf("vwire apply: exit %d: %s", code, errs)
	}
	if out := run("", "get", "--raw", resources+"networkserviceendpoints"); !strings.Contains(out, `"name":"grpc-nse"`) {
		t.Fatalf("kubectl get networkserviceendpoints does not list the endpoint registered through the registry:\n%s", out)
	}
}
