// Package kubetest runs a real Kubernetes API server inside a test: the
// API extensions server (k8s.io/apiextensions-apiserver, the part of
// kube-apiserver that serves CustomResourceDefinitions and custom
// resources) on loopback, on an embedded etcd (etcdtest). It serves no
// built-in kinds (no Pods, Namespaces or RBAC): custom resources can live
// in any namespace name, and every request is allowed. It serves the list
// of API groups (/apis) that kube-apiserver's aggregator would, so that
// kubectl apply and get find the custom resources by kind.
//
//	srv := kubetest.Start(t)
//	srv.InstallCRDs(t, "deployments/kubernetes/crd-networkservices.yaml")
//	cfg := srv.Config() // a *rest.Config for client-go
//	kubeconfig := srv.Kubeconfig(t) // a file for kubectl
package kubetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/vwire/vwire/registry/store/etcdstore/etcdtest"
)

// establishTimeout bounds the wait for an installed CRD to be served.
const establishTimeout = 60 * time.Second

// Server is an API server owned by one test.
type Server struct {
	config *rest.Config
	// Startup is how long the API server took to answer /healthz.
	Startup time.Duration
}

// fakeKubeconfig points the server's delegated authentication and
// authorization at nothing; with --authentication-skip-lookup the
// server starts without them and allows every request.
const fakeKubeconfig = `apiVersion: v1
kind: Config
clusters:
- cluster: {server: "http://127.0.0.1:1"}
  name: none
contexts:
- context: {cluster: none, user: none}
  name: none
current-context: none
users:
- name: none
  user: {token: none}
`

// Start runs an API server on a new embedded etcd and stops both when the
// test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	etcd := etcdtest.Start(t)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "delegation.kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fakeKubeconfig), 0o600); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	begin := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	config, err := serve(ctx, dir, done, []string{
		"--etcd-servers", strings.Join(etcd.Endpoints(), ","),
		"--etcd-prefix", "/kubetest",
		"--authentication-skip-lookup",
		"--authentication-kubeconfig", kubeconfig,
		"--authorization-kubeconfig", kubeconfig,
		"--kubeconfig", kubeconfig,
		// Nothing here to ask: no kube-apiserver behind this one.
		"--enable-priority-and-fairness=false",
		"--disable-admission-plugins", "NamespaceLifecycle,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,MutatingAdmissionPolicy",
	})
	// Registered after etcdtest's cleanup, so it runs before it.
	t.Cleanup(func() {
		cancel()
		if config != nil {
			if err := <-done; err != nil {
				t.Errorf("kubetest: API server stopped: %v", err)
			}
		}
	})
	if err != nil {
		t.Fatalf("kubetest: start API server: %v", err)
	}
	return &Server{config: config, Startup: time.Since(begin)}
}

// Config returns a client configuration for the server.
func (s *Server) Config() *rest.Config { return rest.CopyConfig(s.config) }

// Kubeconfig writes a kubeconfig file for the server (for kubectl) and
// returns its path.
func (s *Server) Kubeconfig(t testing.TB) string {
	t.Helper()
	return s.kubeconfig(t, s.config.Host)
}

// Addr is the server's host:port on loopback.
func (s *Server) Addr() string { return strings.TrimPrefix(s.config.Host, "https://") }

// KubeconfigVia writes a kubeconfig that reaches the server at addr
// (host:port of a relay to Addr, e.g. inside a network namespace) and
// returns its path: the server's certificate is checked by name, not
// address.
func (s *Server) KubeconfigVia(t testing.TB, addr string) string {
	t.Helper()
	return s.kubeconfig(t, "https://"+addr)
}

func (s *Server) kubeconfig(t testing.TB, host string) string {
	c := s.config
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: c.CAData, TLSServerName: c.ServerName, InsecureSkipTLSVerify: c.Insecure}
	cfg.AuthInfos["kubetest"] = &clientcmdapi.AuthInfo{Token: c.BearerToken}
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "kubetest", Namespace: "default"}
	cfg.CurrentContext = "kubetest"
	file := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, file); err != nil {
		t.Fatalf("kubetest: write kubeconfig: %v", err)
	}
	return file
}

// InstallCRDs creates the CustomResourceDefinitions in files (YAML, one
// per file) through the API and waits until each is established and in
// the API's discovery.
func (s *Server) InstallCRDs(t testing.TB, files ...string) {
	t.Helper()
	if err := s.installCRDs(t.Context(), files...); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
}

func (s *Server) installCRDs(ctx context.Context, files ...string) error {
	client, err := apiextclient.NewForConfig(s.config)
	if err != nil {
		return err
	}
	crds := client.ApiextensionsV1().CustomResourceDefinitions()
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		var crd apiextv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(data, &crd); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if _, err := crds.Create(ctx, &crd, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create %s from %s: %w", crd.Name, file, err)
		}
	}
	disc, err := discovery.NewDiscoveryClientForConfig(s.config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, establishTimeout)
	defer cancel()
	for _, file := range files {
		data, _ := os.ReadFile(file)
		var crd apiextv1.CustomResourceDefinition
		_ = yaml.Unmarshal(data, &crd)
		for {
			got, err := crds.Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("wait for %s: %w", crd.Name, err)
			}
			if established(got) && discovered(disc, got) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not established and discovered: %w", crd.Name, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// discovered tells whether every served version of crd is in the API's
// discovery, both forms: the aggregated list (kubectl 1.26 and later) and
// the version's own resource list (older kubectl). The server updates
// discovery after it marks a CRD established: a kubectl apply in between
// would not find the kind.
func discovered(disc *discovery.DiscoveryClient, crd *apiextv1.CustomResourceDefinition) bool {
	_, lists, err := disc.ServerGroupsAndResources()
	if err != nil {
		return false
	}
	has := func(list *metav1.APIResourceList) bool {
		return list != nil && slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool {
			return r.Name == crd.Spec.Names.Plural && r.Kind == crd.Spec.Names.Kind
		})
	}
	for _, v := range crd.Spec.Versions {
		if !v.Served {
			continue
		}
		gv := crd.Spec.Group + "/" + v.Name
		if !slices.ContainsFunc(lists, func(l *metav1.APIResourceList) bool { return l.GroupVersion == gv && has(l) }) {
			return false
		}
		if list, err := disc.ServerResourcesForGroupVersion(gv); err != nil || !has(list) {
			return false
		}
	}
	return true
}

func established(crd *apiextv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
			return true
		}
	}
	return false
}
