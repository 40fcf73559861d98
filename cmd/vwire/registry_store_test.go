package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// kubectlFor returns a runner of kubectl against kubeconfig in namespace
// (stdout and stderr, and the exit code), or skips the test without kubectl.
// VWIRE_KUBECTL names another kubectl (e.g. Debian's 1.20 beside a newer one).
func kubectlFor(t *testing.T, kubeconfig, namespace string) func(stdin string, args ...string) (string, int) {
	t.Helper()
	bin := os.Getenv("VWIRE_KUBECTL")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("kubectl"); err != nil {
			t.Skip("kubectl is not installed (.ci/run installs Debian's kubernetes-client)")
		}
	}
	return func(stdin string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), bin, append([]string{"--kubeconfig", kubeconfig, "--namespace", namespace}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return string(out), exit.ExitCode()
		}
		if err != nil {
			t.Fatalf("kubectl %v: %v", args, err)
		}
		return string(out), 0
	}
}

// TestRegistryKubernetesStore runs `vwire registry --store kubernetes`
// against a real API server (kubetest) with the project's CRDs: an object
// applied with kubectl is listed by `vwire get`, and an endpoint applied
// through the registry is listed by `kubectl get`.
func TestRegistryKubernetesStore(t *testing.T) {
	api := kubetest.Start(t)
	api.InstallCRDs(t, crdFiles...)
	kubeconfig := api.Kubeconfig(t)
	const namespace = "vwire-e2e"
	kubectl := kubectlFor(t, kubeconfig, namespace)
	c := startRegistry(t, t.TempDir(), "--store", "kubernetes", "--kubeconfig", kubeconfig, "--namespace", namespace)

	if out, code := kubectl("apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata: {name: kubectl-service}\nspec: {payload: ETHERNET}\n",
		"apply", "-f", "-"); code != 0 {
		t.Fatalf("kubectl apply: exit %d:\n%s", code, out)
	}
	waitListed(t, c, "kubectl-service")

	nse := "apiVersion: networkservicemesh.io/v1\nkind: NetworkServiceEndpoint\nmetadata: {name: grpc-nse}\n" +
		"spec: {network_service_names: [kubectl-service], url: \"tcp://127.0.0.1:5999\", expiration_time: \"" +
		time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + "\"}\n"
	if _, errs, code := c.run(nse, "apply", "-f", "-"); code != 0 {
		t.Fatalf("vwire apply: exit %d: %s", code, errs)
	}
	out, code := kubectl("", "get", "networkserviceendpoints", "-o", "name")
	if code != 0 || !strings.Contains(out, "networkserviceendpoint.networkservicemesh.io/grpc-nse") {
		t.Fatalf("kubectl get networkserviceendpoints (exit %d) does not list the endpoint registered through the registry:\n%s", code, out)
	}

	// Endpoints applied with kubectl expire at their expiration_time, as
	// registered ones do: the registry never answers the one already
	// expired and deletes both objects.
	kubeNSE := func(name string, expires time.Time) string {
		return "apiVersion: networkservicemesh.io/v1\nkind: NetworkServiceEndpoint\nmetadata: {name: " + name + "}\n" +
			"spec: {network_service_names: [kubectl-service], url: \"tcp://127.0.0.1:5998\", expiration_time: \"" +
			expires.UTC().Format(time.RFC3339Nano) + "\"}\n"
	}
	soon := time.Now().Add(8 * time.Second) // time to be listed first, even on a loaded machine
	if out, code := kubectl(kubeNSE("expired-nse", time.Now().Add(-time.Minute))+"---\n"+kubeNSE("soon-nse", soon), "apply", "-f", "-"); code != 0 {
		t.Fatalf("kubectl apply: exit %d:\n%s", code, out)
	}
	for {
		out := c.ok("get", "nse")
		if strings.Contains(out, "expired-nse") {
			t.Fatalf("vwire get nse lists an endpoint whose expiration_time has passed:\n%s", out)
		}
		if strings.Contains(out, "soon-nse") {
			break
		}
		if time.Now().After(soon) {
			t.Fatalf("vwire get nse did not list soon-nse before it expired:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := kubectl("", "get", "networkserviceendpoints", "-o", "name")
		listed := c.ok("get", "nse")
		if !strings.Contains(out, "expired-nse") && !strings.Contains(out, "soon-nse") && !strings.Contains(listed, "soon-nse") {
			if time.Now().Before(soon) {
				t.Fatalf("soon-nse gone before its expiration_time %v", soon)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired endpoints not deleted:\nkubectl:\n%s\nvwire:\n%s", out, listed)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var crdFiles = []string{"../../deployments/kubernetes/crd-networkservices.yaml", "../../deployments/kubernetes/crd-networkserviceendpoints.yaml"}

// waitListed waits until `vwire get ns` lists every name.
func waitListed(t *testing.T, c cli, names ...string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := c.ok("get", "ns")
		missing := ""
		for _, n := range names {
			if !strings.Contains(out, n) {
				missing = n
			}
		}
		if missing == "" {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("vwire get ns does not list %s, applied with kubectl:\n%s", missing, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// localNames rewrites each metadata name `name@domain` to `name`: the
// object a registry authoritative for domain keeps (Kubernetes names
// cannot hold '@').
var localNames = regexp.MustCompile(`(?m)^(  name: [^@\s]+)@[a-z0-9.-]+$`)

// TestKubectlApplyExamples applies the architecture document's examples
// (the seed file and the repository's copy) with kubectl to a registry on
// the Kubernetes store that is authoritative for the examples' domains.
// As written, the documents named name@domain are refused by Kubernetes
// (metadata.name); in the form a domain's registry keeps (name) every one
// is accepted but the malformed seed document, refused with its field
// path; and what the registry then serves is exactly what `vwire apply` of
// the same documents gives a registry on the memory store.
func TestKubectlApplyExamples(t *testing.T) {
	api := kubetest.Start(t)
	api.InstallCRDs(t, crdFiles...)
	kubeconfig := api.Kubeconfig(t)
	domains := []string{"--domain", "finance.example.com", "--domain", "sales.example.com", "--domain", "marketing.example.com"}
	for _, tc := range []struct {
		name, file string
		malformed  bool // holds the malformed seed document
	}{
		{"seed", "../../registry/manifest/testdata/seed-examples.yaml", true},
		{"architecture", "../../deployments/examples/architecture/networkservices.yaml", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			namespace := "examples-" + tc.name
			kubectl := kubectlFor(t, kubeconfig, namespace)
			kube := startRegistry(t, t.TempDir(), append([]string{"--store", "kubernetes", "--kubeconfig", kubeconfig, "--namespace", namespace}, domains...)...)
			data, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			out, code := kubectl(string(data), "apply", "-f", "-")
			if code == 0 || strings.Count(out, "metadata.name: Invalid value") != strings.Count(string(data), "@") {
				t.Fatalf("kubectl apply as written: exit %d, want every name@domain refused (metadata.name):\n%s", code, out)
			}

			local := localNames.ReplaceAllString(string(data), "$1")
			out, code = kubectl(local, "apply", "-f", "-")
			refused := strings.Count(out, " is invalid: ")
			switch {
			case tc.malformed && (code == 0 || refused != 1 || !strings.Contains(out, "spec.matches[2].source_selector.routes")):
				t.Fatalf("kubectl apply: exit %d, want the malformed document alone refused at spec.matches[2].source_selector.routes:\n%s", code, out)
			case !tc.malformed && (code != 0 || refused != 0):
				t.Fatalf("kubectl apply: exit %d:\n%s", code, out)
			}
			t.Logf("kubectl apply:\n%s", out)
			waitListed(t, kube, "simple-network-service", "service-mesh", "secure-vl3", "local-vl3")

			// The same documents through vwire apply, one by one (the
			// malformed one is refused there too).
			mem := startRegistry(t, t.TempDir(), domains...)
			for _, doc := range strings.Split(local, "\n---") {
				if !strings.Contains(doc, "kind:") {
					continue
				}
				if _, errs, code := mem.run(doc, "apply", "-f", "-"); code != 0 && !strings.Contains(errs, "spec.matches[2].source_selector") {
					t.Fatalf("vwire apply: exit %d: %s\n%s", code, errs, doc)
				}
			}
			for _, name := range []string{"simple-network-service", "service-mesh@finance.example.com", "secure-vl3@sales.example.com", "local-vl3@marketing.example.com"} {
				want, got := mem.ok("get", "ns", name, "-o", "yaml"), kube.ok("get", "ns", name, "-o", "yaml")
				if got != want {
					t.Errorf("%s applied with kubectl:\n%s\nwith vwire apply:\n%s", name, got, want)
				}
			}
		})
	}
}
