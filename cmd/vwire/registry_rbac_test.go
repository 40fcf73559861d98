package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/vwire/vwire/registry/store/etcdstore/etcdtest"
)

// The registry's identity in deployments/kubernetes/rbac.yaml and
// deployments/kube-store/registry-rbac.yaml: RBAC matches a ServiceAccount
// subject by this user name, whatever authenticated it (a token in a pod,
// a client certificate here).
const (
	rbacNamespace = "vwire"
	registryUser  = "system:serviceaccount:" + rbacNamespace + ":vwire-registry"
)

// apiserverReadyTimeout bounds kube-apiserver's start (it bootstraps its
// RBAC roles into etcd first); generous for a loaded 2-core machine.
const apiserverReadyTimeout = 3 * time.Minute

// TestRegistryRBAC runs `vwire registry --store kubernetes` against a real
// kube-apiserver (KUBE_APISERVER_BIN, built by tools/kube-apiserver.sh)
// with --authorization-mode=RBAC, as the registry's service account, under
// exactly the deployments' Role and RoleBinding (applied with kubectl as an
// administrator): without the RoleBinding the registry stops with one line
// naming the refusal; with it, it registers, finds, watches, updates,
// unregisters and expires records; and the same identity is refused (403)
// everything the Role does not grant.
func TestRegistryRBAC(t *testing.T) {
	bin := os.Getenv("KUBE_APISERVER_BIN")
	if bin == "" {
		t.Skip("KUBE_APISERVER_BIN is not set (make test-kube-rbac builds kube-apiserver and sets it)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("KUBE_APISERVER_BIN: %v (make test-kube-rbac builds it)", err)
	}
	api := startKubeAPIServer(t, bin)
	admin := kubectlFor(t, api.admin, rbacNamespace)

	// The cluster as the deployments make it, less the RoleBinding.
	for _, f := range append([]string{"../../deployments/kubernetes/namespace.yaml"}, crdFiles...) {
		if out, code := admin("", "apply", "-f", f); code != 0 {
			t.Fatalf("kubectl apply -f %s: exit %d:\n%s", f, code, out)
		}
	}
	if out, code := admin("", "wait", "--for", "condition=established", "--timeout", "60s",
		"crd/networkservices.networkservicemesh.io", "crd/networkserviceendpoints.networkservicemesh.io"); code != 0 {
		t.Fatalf("kubectl wait: exit %d:\n%s", code, out)
	}
	rbacDoc, err := os.ReadFile("../../deployments/kube-store/registry-rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var roleOnly []string
	for _, doc := range strings.Split(string(rbacDoc), "\n---") {
		if !strings.Contains(doc, "\nkind: RoleBinding") {
			roleOnly = append(roleOnly, doc)
		}
	}
	if len(roleOnly) != 1 {
		t.Fatalf("registry-rbac.yaml: want a Role and a RoleBinding, found %d other documents", len(roleOnly))
	}
	for _, in := range []struct{ name, stdin string }{{"rbac.yaml", ""}, {"Role", roleOnly[0]}} {
		args := []string{"apply", "-f", "-"}
		if in.stdin == "" {
			args = []string{"apply", "-f", "../../deployments/kubernetes/rbac.yaml"}
		}
		if out, code := admin(in.stdin, args...); code != 0 {
			t.Fatalf("kubectl apply %s: exit %d:\n%s", in.name, code, out)
		}
	}

	registryFlags := []string{"--store", "kubernetes", "--kubeconfig", api.registry, "--namespace", rbacNamespace}
	t.Run("no RoleBinding", func(t *testing.T) {
		c := cli{t: t, state: t.TempDir()}
		_, errs, code := c.run("", append([]string{"registry", "--listen", "127.0.0.1:0"}, registryFlags...)...)
		want := `User "` + registryUser + `" cannot list resource "networkservice`
		if code == 0 || !strings.Contains(errs, want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Fatalf("exit %d, stderr %q: want one line containing %q", code, errs, want)
		}
		t.Logf("without the RoleBinding: %s", strings.TrimSpace(errs))
	})

	if out, code := admin("", "apply", "-f", "../../deployments/kube-store/registry-rbac.yaml"); code != 0 {
		t.Fatalf("kubectl apply registry-rbac.yaml: exit %d:\n%s", code, out)
	}
	// The authorizer sees the binding through its informer: wait until the
	// registry's identity may list before starting the registry.
	as := kubectlFor(t, api.registry, rbacNamespace)
	deadline := time.Now().Add(30 * time.Second)
	for _, res := range []string{"networkservices", "networkserviceendpoints"} {
		for {
			out, code := as("", "get", res)
			if code == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kubectl get %s as %s after the RoleBinding: exit %d:\n%s", res, registryUser, code, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	t.Run("registry works", func(t *testing.T) {
		registryJob(t, admin, startRegistry(t, t.TempDir(), registryFlags...))
	})
	t.Run("refused", func(t *testing.T) {
		refused(t, api.registry)
	})
}

// registryJob: everything the registry does with the API under its Role.
func registryJob(t *testing.T, admin func(string, ...string) (string, int), c cli) {
	watch := exec.Command(vwireBin, "get", "nse", "--watch", "--state-dir", c.state, "--registry", c.addr)
	watch.Env = append(os.Environ(), "SPIFFE_ENDPOINT_SOCKET=")
	wout := &syncBuffer{}
	watch.Stdout, watch.Stderr = wout, wout
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		watch.Process.Kill()
		watch.Wait()
	})

	// Register (create, then update) through gRPC; Kubernetes holds it.
	ns := func(payload string) string {
		return "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata: {name: rbac-service}\nspec: {payload: " + payload + "}\n"
	}
	for _, p := range []string{"IP", "ETHERNET"} {
		if _, errs, code := c.run(ns(p), "apply", "-f", "-"); code != 0 {
			t.Fatalf("vwire apply NetworkService payload %s: exit %d: %s", p, code, errs)
		}
	}
	if out, code := admin("", "get", "networkservice", "rbac-service", "-o", "jsonpath={.spec.payload}"); code != 0 || out != "ETHERNET" {
		t.Fatalf("kubectl get networkservice rbac-service: exit %d, payload %q, want ETHERNET (the update)", code, out)
	}
	nse := func(name string, expires time.Time) string {
		return "apiVersion: networkservicemesh.io/v1\nkind: NetworkServiceEndpoint\nmetadata: {name: " + name + "}\n" +
			"spec: {network_service_names: [rbac-service], url: \"tcp://127.0.0.1:5997\", expiration_time: \"" +
			expires.UTC().Format(time.RFC3339Nano) + "\"}\n"
	}
	if _, errs, code := c.run(nse("rbac-nse", time.Now().Add(time.Hour)), "apply", "-f", "-"); code != 0 {
		t.Fatalf("vwire apply NetworkServiceEndpoint: exit %d: %s", code, errs)
	}
	if out, code := admin("", "get", "networkserviceendpoints", "-o", "name"); code != 0 || !strings.Contains(out, "/rbac-nse") {
		t.Fatalf("kubectl get networkserviceendpoints (exit %d) does not list rbac-nse:\n%s", code, out)
	}
	if out := c.ok("get", "nse", "rbac-nse"); !strings.Contains(out, "rbac-nse") {
		t.Fatalf("vwire get nse rbac-nse:\n%s", out)
	}

	// Objects applied by others reach the registry's informers.
	if out, code := admin("apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata: {name: kubectl-service}\nspec: {payload: IP}\n",
		"apply", "-f", "-"); code != 0 {
		t.Fatalf("kubectl apply: exit %d:\n%s", code, out)
	}
	waitListed(t, c, "rbac-service", "kubectl-service")

	// Unregister: deleted from Kubernetes, seen by the watch.
	c.ok("delete", "nse", "rbac-nse")
	if out, code := admin("", "get", "networkserviceendpoints", "-o", "name"); code != 0 || strings.Contains(out, "rbac-nse") {
		t.Fatalf("kubectl get networkserviceendpoints after vwire delete (exit %d):\n%s", code, out)
	}
	waitFor(t, 10*time.Second, "the watch's ADDED and DELETED of rbac-nse", func() bool {
		w := wout.String()
		return strings.Contains(w, "ADDED") && strings.Contains(w, "DELETED")
	}, wout.String)

	// Expiry: an endpoint applied with kubectl is deleted by the registry
	// at its expiration_time.
	soon := time.Now().Add(8 * time.Second)
	if out, code := admin(nse("soon-nse", soon), "apply", "-f", "-"); code != 0 {
		t.Fatalf("kubectl apply: exit %d:\n%s", code, out)
	}
	waitFor(t, time.Until(soon), "vwire get nse lists soon-nse before it expires", func() bool {
		return strings.Contains(c.ok("get", "nse"), "soon-nse")
	}, func() string { return c.ok("get", "nse") })
	var last string
	waitFor(t, time.Until(soon)+30*time.Second, "the registry deletes soon-nse at its expiration_time", func() bool {
		last, _ = admin("", "get", "networkserviceendpoints", "-o", "name")
		return !strings.Contains(last, "soon-nse")
	}, func() string { return last })
	if time.Now().Before(soon) {
		t.Fatalf("soon-nse deleted before its expiration_time %v", soon)
	}
}

// refused: the registry's identity gets 403 Forbidden for anything its
// Role does not grant, and is allowed what it does.
func refused(t *testing.T, kubeconfig string) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	nsm := func(res string) schema.GroupVersionResource {
		return schema.GroupVersionResource{Group: "networkservicemesh.io", Version: "v1", Resource: res}
	}
	core := func(res string) schema.GroupVersionResource {
		return schema.GroupVersionResource{Version: "v1", Resource: res}
	}
	obj := func(gvr schema.GroupVersionResource, kind, name string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(gvr.GroupVersion().String())
		u.SetKind(kind)
		u.SetName(name)
		return u
	}
	if _, err := client.Resource(nsm("networkservices")).Namespace(rbacNamespace).Get(ctx, "rbac-service", metav1.GetOptions{}); err != nil {
		t.Fatalf("get networkservices/rbac-service in %s, granted: %v", rbacNamespace, err)
	}
	for _, tc := range []struct {
		name, verb, resource string
		call                 func() error
	}{
		{"secrets", "list", "secrets", func() error {
			_, err := client.Resource(core("secrets")).Namespace(rbacNamespace).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"configmaps", "create", "configmaps", func() error {
			_, err := client.Resource(core("configmaps")).Namespace(rbacNamespace).Create(ctx, obj(core("configmaps"), "ConfigMap", "x"), metav1.CreateOptions{})
			return err
		}},
		{"other namespace", "list", "networkservices", func() error {
			_, err := client.Resource(nsm("networkservices")).Namespace("default").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"other namespace create", "create", "networkserviceendpoints", func() error {
			_, err := client.Resource(nsm("networkserviceendpoints")).Namespace("kube-system").Create(ctx, obj(nsm("networkserviceendpoints"), "NetworkServiceEndpoint", "x"), metav1.CreateOptions{})
			return err
		}},
		{"all namespaces", "list", "networkserviceendpoints", func() error {
			_, err := client.Resource(nsm("networkserviceendpoints")).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"patch", "patch", "networkservices", func() error {
			_, err := client.Resource(nsm("networkservices")).Namespace(rbacNamespace).Patch(ctx, "rbac-service", types.MergePatchType, []byte(`{"spec":{"payload":"IP"}}`), metav1.PatchOptions{})
			return err
		}},
		{"deletecollection", "deletecollection", "networkserviceendpoints", func() error {
			return client.Resource(nsm("networkserviceendpoints")).Namespace(rbacNamespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		}},
		{"own RoleBinding", "create", "rolebindings", func() error {
			gvr := schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}
			_, err := client.Resource(gvr).Namespace(rbacNamespace).Create(ctx, obj(gvr, "RoleBinding", "x"), metav1.CreateOptions{})
			return err
		}},
		{"CRDs", "list", "customresourcedefinitions", func() error {
			_, err := client.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}).List(ctx, metav1.ListOptions{})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var status apierrors.APIStatus
			if !errors.As(err, &status) || status.Status().Code != http.StatusForbidden {
				t.Fatalf("%s %s: %v, want 403 Forbidden", tc.verb, tc.resource, err)
			}
			if want := fmt.Sprintf("User %q cannot %s resource %q", registryUser, tc.verb, tc.resource); !strings.Contains(err.Error(), want) {
				t.Fatalf("%s %s: %v, want %q", tc.verb, tc.resource, err, want)
			}
		})
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, state())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kubeAPIServer is a kube-apiserver owned by one test, and kubeconfig files
// for its two users.
type kubeAPIServer struct {
	admin    string // kubeconfig of a system:masters user
	registry string // kubeconfig of the registry's service account user
}

// startKubeAPIServer runs kube-apiserver on loopback against a new embedded
// etcd, authenticating client certificates of a CA made here and
// authorizing with RBAC only, and stops it when the test ends.
func startKubeAPIServer(t *testing.T, bin string) kubeAPIServer {
	t.Helper()
	etcd := etcdtest.Start(t)
	dir := t.TempDir()
	ca := newTestCA(t)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", ca.certPEM)
	serverCert, serverKey := ca.issue(t, pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth)
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		t.Fatal(err)
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--etcd-servers", strings.Join(etcd.Endpoints(), ","),
		"--etcd-prefix", "/kube-rbac-test",
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", port,
		"--tls-cert-file", write("server.pem", serverCert),
		"--tls-private-key-file", write("server.key", serverKey),
		"--client-ca-file", caFile,
		"--authorization-mode", "RBAC",
		"--anonymous-auth=false",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", write("sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER})),
		"--service-account-signing-key-file", write("sa.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER})),
		"--service-cluster-ip-range", "10.96.0.0/24",
		// No kubelet, no nodes: nothing to reconcile the kubernetes
		// Service's endpoints to (and loopback is not a valid one).
		"--endpoint-reconciler-type", "none",
		"--profiling=false",
	)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Registered after etcdtest's cleanup, so it runs before it.
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("kube-apiserver log (tail):\n%s", tail(logs.String(), 60))
		}
	})

	kubeconfig := func(name string, subject pkix.Name) string {
		cert, key := ca.issue(t, subject, x509.ExtKeyUsageClientAuth)
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters["rbac-test"] = &clientcmdapi.Cluster{Server: "https://" + addr, CertificateAuthorityData: ca.certPEM}
		cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: "rbac-test", AuthInfo: name, Namespace: rbacNamespace}
		cfg.CurrentContext = name
		file := filepath.Join(dir, name+".kubeconfig")
		if err := clientcmd.WriteToFile(*cfg, file); err != nil {
			t.Fatal(err)
		}
		return file
	}
	s := kubeAPIServer{
		admin: kubeconfig("admin", pkix.Name{CommonName: "vwire-test-admin", Organization: []string{"system:masters"}}),
		// The groups a service account token would carry.
		registry: kubeconfig("registry", pkix.Name{CommonName: registryUser, Organization: []string{"system:serviceaccounts", "system:serviceaccounts:" + rbacNamespace}}),
	}

	// Ready: /readyz answers 200 to the administrator (it includes the
	// bootstrap of the default RBAC roles).
	cert, key := ca.issue(t, pkix.Name{CommonName: "vwire-test-probe", Organization: []string{"system:masters"}}, x509.ExtKeyUsageClientAuth)
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.certPEM)
	probe := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	defer probe.CloseIdleConnections()
	begin := time.Now()
	deadline := begin.Add(apiserverReadyTimeout)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("kube-apiserver exited: %v\n%s", err, tail(logs.String(), 60))
		default:
		}
		resp, err := probe.Get("https://" + addr + "/readyz")
		if err == nil {
			body := new(bytes.Buffer)
			body.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = fmt.Errorf("%s: %s", resp.Status, tail(body.String(), 10))
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after %v: %v\n%s", apiserverReadyTimeout, err, tail(logs.String(), 60))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("kube-apiserver ready in %v", time.Since(begin).Round(time.Millisecond))
	return s
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// testCA issues the API server's and its users' certificates.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vwire rbac test CA"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate for subject (valid for 127.0.0.1 and
// localhost) and its key, PEM-encoded.
func (ca *testCA) issue(t *testing.T, subject pkix.Name, usage x509.ExtKeyUsage) ([]byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}
