package kubestore

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/protobuf/proto"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/vwire/vwire/registry/store"
	"github.com/vwire/vwire/registry/store/kubestore/kubetest"
	"github.com/vwire/vwire/registry/store/storetest"
)

const patience = 30 * time.Second

// crds are the project's own CRD files, installed through the API.
var crds = []string{
	"../../../deployments/kubernetes/crd-networkservices.yaml",
	"../../../deployments/kubernetes/crd-networkserviceendpoints.yaml",
}

// startAPI runs one API server with the project's CRDs for a whole test.
func startAPI(t *testing.T) *kubetest.Server {
	t.Helper()
	srv := kubetest.Start(t)
	t.Logf("API server answered /healthz after %v", srv.Startup)
	srv.InstallCRDs(t, crds...)
	return srv
}

// namespaces hands out a fresh namespace for each store that wants to
// start empty.
var namespaces atomic.Int64

func freshNamespace() string { return fmt.Sprintf("t%d", namespaces.Add(1)) }

func open(t *testing.T, srv *kubetest.Server, namespace string, resources map[store.Kind]Resource) *Store {
	t.Helper()
	s, err := New(t.Context(), Config{REST: srv.Config(), Namespace: namespace, Resources: resources})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// opaque keeps the suite's arbitrary values in the value annotation only,
// on the project's CRDs: an endpoint's spec is a placeholder that satisfies
// the schema (url is required), a service has none.
func opaque() map[store.Kind]Resource {
	res := NetworkServiceMesh()
	for kind, r := range res {
		r.Codec = placeholder{endpoint: kind == store.KindEndpoint}
		res[kind] = r
	}
	return res
}

type placeholder struct{ endpoint bool }

func (p placeholder) Spec(string, []byte) (map[string]any, error) {
	if p.endpoint {
		return map[string]any{"url": "tcp://storetest.invalid:1"}, nil
	}
	return nil, nil
}

func (placeholder) Value(name string, _ map[string]any) ([]byte, []string, error) {
	return nil, nil, fmt.Errorf("%s: a placeholder spec holds no record", name)
}

// TestConformance runs the store conformance suite against the real API
// server, each subtest in a namespace of its own. It records every request
// the stores make: the verbs on the resources must be exactly those the
// registry's Role grants (deployments/kube-store/registry-rbac.yaml).
func TestConformance(t *testing.T) {
	srv := startAPI(t)
	var rec verbRecorder
	storetest.Run(t, func(t *testing.T) store.Store {
		cfg := srv.Config()
		cfg.Wrap(rec.wrap)
		s, err := New(t.Context(), Config{REST: cfg, Namespace: freshNamespace(), Resources: opaque()})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return s
	})
	granted := roleVerbs(t)
	used := rec.verbs()
	if !slices.Equal(used, granted) {
		t.Errorf("the store used %v on networkservicemesh.io; the Role grants %v", used, granted)
	}
}

// verbRecorder notes the Kubernetes verb of every request on the
// networkservicemesh.io resources.
type verbRecorder struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (r *verbRecorder) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		// /apis/networkservicemesh.io/v1/namespaces/NS/RESOURCE[/NAME]
		parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
		if len(parts) >= 6 && parts[1] == Group {
			named := len(parts) > 6
			verb := map[string]string{http.MethodPost: "create", http.MethodPut: "update", http.MethodPatch: "patch", http.MethodDelete: "delete"}[req.Method]
			switch {
			case req.Method == http.MethodDelete && !named:
				verb = "deletecollection"
			case req.Method == http.MethodGet && req.URL.Query().Get("watch") == "true":
				verb = "watch"
			case req.Method == http.MethodGet && named:
				verb = "get"
			case req.Method == http.MethodGet:
				verb = "list"
			}
			r.mu.Lock()
			if r.seen == nil {
				r.seen = make(map[string]bool)
			}
			r.seen[verb] = true
			r.mu.Unlock()
		}
		return next.RoundTrip(req)
	})
}

func (r *verbRecorder) verbs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.seen))
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// roleVerbs reads the verbs of the registry's Role and checks it grants
// them on exactly the two resources.
func roleVerbs(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("../../../deployments/kube-store/registry-rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, _, _ := strings.Cut(string(data), "\n---\n")
	var role rbacv1.Role
	if err := yaml.UnmarshalStrict([]byte(doc), &role); err != nil {
		t.Fatalf("registry-rbac.yaml: %v", err)
	}
	if role.Kind != "Role" || len(role.Rules) != 1 {
		t.Fatalf("registry-rbac.yaml: want one Role with one rule, got %s with %d", role.Kind, len(role.Rules))
	}
	rule := role.Rules[0]
	if !slices.Equal(rule.APIGroups, []string{Group}) || !slices.Equal(rule.Resources, []string{"networkservices", "networkserviceendpoints"}) ||
		len(rule.ResourceNames) > 0 || len(rule.NonResourceURLs) > 0 {
		t.Fatalf("registry-rbac.yaml: rule %+v, want exactly networkservices and networkserviceendpoints of %s", rule, Group)
	}
	return slices.Sorted(slices.Values(rule.Verbs))
}

// TestNetworkServiceMeshObjects: what the registry stores reads back with
// kubectl-shaped specs, and objects created by others (as kubectl does,
// without vwire's annotations) are records with their tags.
func TestNetworkServiceMeshObjects(t *testing.T) {
	srv := startAPI(t)
	ns := freshNamespace()
	s := open(t, srv, ns, NetworkServiceMesh())
	defer s.Close()
	client, err := dynamic.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	res := NetworkServiceMesh()
	endpoints := client.Resource(res[store.KindEndpoint].GVR).Namespace(ns)

	// Registered through the store: the object has the manifest's spec.
	nse := &registry.NetworkServiceEndpoint{
		Name:                 "nse-1@finance.example.com",
		NetworkServiceNames:  []string{"secure-intranet-connectivity"},
		NetworkServiceLabels: map[string]*registry.NetworkServiceLabels{"secure-intranet-connectivity": {Labels: map[string]string{"app": "firewall"}}},
		Url:                  "tcp://10.0.0.1:5001",
	}
	value, err := proto.Marshal(nse)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, store.KindEndpoint, nse.Name, value, time.Minute, nse.NetworkServiceNames...); err != nil {
		t.Fatalf("Put: %v", err)
	}
	object, _ := ObjectName(nse.Name)
	got, err := endpoints.Get(ctx, object, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get object %s: %v", object, err)
	}
	if url, _, _ := unstructured.NestedString(got.Object, "spec", "url"); url != nse.Url {
		t.Errorf("object spec.url = %q, want %q", url, nse.Url)
	}
	if names, _, _ := unstructured.NestedStringSlice(got.Object, "spec", "network_service_names"); len(names) != 1 || names[0] != "secure-intranet-connectivity" {
		t.Errorf("object spec.network_service_names = %v", names)
	}

	// Created as kubectl would: no vwire annotations.
	_, w, err := s.ListAndWatch(ctx, store.KindEndpoint, "vl3")
	if err != nil {
		t.Fatal(err)
	}
	applied := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networkservicemesh.io/v1",
		"kind":       "NetworkServiceEndpoint",
		"metadata":   map[string]any{"name": "applied-nse"},
		"spec": map[string]any{
			"network_service_names": []any{"vl3"},
			"url":                   "tcp://10.0.0.2:5001",
		},
	}}
	if _, err := endpoints.Create(ctx, applied, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create as kubectl would: %v", err)
	}
	select {
	case ev := <-w.Events:
		var got registry.NetworkServiceEndpoint
		if ev.Name != "applied-nse" || ev.Deleted || proto.Unmarshal(ev.Value, &got) != nil || got.Url != "tcp://10.0.0.2:5001" {
			t.Fatalf("watch of tag vl3: event %s deleted=%v value %v", ev.Name, ev.Deleted, &got)
		}
	case <-time.After(patience):
		t.Fatalf("object created as kubectl would did not reach the watch of its tag")
	}

	// Edited by someone else: the spec wins over the stale value.
	got, err = endpoints.Get(ctx, object, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(got.Object, "tcp://10.9.9.9:5001", "spec", "url"); err != nil {
		t.Fatal(err)
	}
	if _, err := endpoints.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("edit: %v", err)
	}
	waitFor(t, func() bool {
		v, err := s.Get(ctx, store.KindEndpoint, nse.Name)
		var e registry.NetworkServiceEndpoint
		return err == nil && proto.Unmarshal(v, &e) == nil && e.Url == "tcp://10.9.9.9:5001"
	}, "the edited url to be read back")

	// An object no record can come from is ignored, not fatal.
	bad := applied.DeepCopy()
	bad.SetName("x--not-base32")
	bad.SetResourceVersion("")
	if _, err := endpoints.Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	entries, err := s.List(ctx, store.KindEndpoint, store.All)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	if strings.Join(names, ",") != "applied-nse,nse-1@finance.example.com" {
		t.Fatalf("List = %v", names)
	}
}

// TestNewErrors: a namespace without the CRDs, or no namespace, fails New
// with the API server's reason.
func TestNewErrors(t *testing.T) {
	srv := kubetest.Start(t) // no CRDs installed
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	defer cancel()
	_, err := New(ctx, Config{REST: srv.Config(), Namespace: "x", Resources: NetworkServiceMesh()})
	if err == nil || !strings.Contains(err.Error(), "the server could not find the requested resource") {
		t.Fatalf("New without CRDs: %v", err)
	}
	if _, err := New(ctx, Config{REST: srv.Config(), Resources: NetworkServiceMesh()}); err == nil {
		t.Fatalf("New without a namespace succeeded")
	}
}

func TestObjectNames(t *testing.T) {
	tests := []struct {
		name    string
		object  string // "" to only check the round trip
		encoded bool
	}{
		{name: "icmp-responder", object: "icmp-responder"},
		{name: "nse.v1", object: "nse.v1"},
		{name: "nse@finance.example.com", encoded: true},
		{name: "Upper", encoded: true},
		{name: "with/slash", encoded: true},
		{name: "with space é", encoded: true},
		{name: "-leading-dash", encoded: true},
		{name: "x--looks-encoded", encoded: true},
		{name: strings.Repeat("a", 253), object: strings.Repeat("a", 253)},
	}
	for _, tt := range tests {
		object, ok := ObjectName(tt.name)
		if !ok {
			t.Errorf("ObjectName(%q) failed", tt.name)
			continue
		}
		if tt.object != "" && object != tt.object {
			t.Errorf("ObjectName(%q) = %q, want %q", tt.name, object, tt.object)
		}
		if tt.encoded != strings.HasPrefix(object, "x--") {
			t.Errorf("ObjectName(%q) = %q, encoded = %v", tt.name, object, !tt.encoded)
		}
		if back, ok := RecordName(object); !ok || back != tt.name {
			t.Errorf("RecordName(%q) = %q, %v; want %q", object, back, ok, tt.name)
		}
	}
	for _, name := range []string{strings.Repeat("A", 200), strings.Repeat("a", 254)} {
		if object, ok := ObjectName(name); ok {
			t.Errorf("ObjectName of a %d-byte name that needs encoding = %q; its encoding is too long", len(name), object)
		}
	}
	for _, object := range []string{"x--not-base32", "x--", "x--c5h0"} { // c5h0 encodes "ab", a plain name
		if _, ok := RecordName(object); ok {
			t.Errorf("RecordName(%q) succeeded; ObjectName never makes it", object)
		}
	}
}

func FuzzObjectName(f *testing.F) {
	for _, seed := range []string{"a", "nse@d.org", "x--a", "", "Ab/ü"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		object, ok := ObjectName(name)
		if !ok {
			return
		}
		if back, ok := RecordName(object); !ok || back != name {
			t.Fatalf("RecordName(ObjectName(%q) = %q) = %q, %v", name, object, back, ok)
		}
	})
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestExpiryFromSpec: endpoints created as kubectl would (no vwire
// annotations) expire at their spec's expiration_time: one in the past is
// deleted at once, one a moment ahead once that moment passes (its watch
// sees the deletion), one an hour ahead stays; an endpoint the store
// wrote and kubectl then edited expires at the edited time.
func TestExpiryFromSpec(t *testing.T) {
	srv := startAPI(t)
	ns := freshNamespace()
	s := open(t, srv, ns, NetworkServiceMesh())
	defer s.Close()
	client, err := dynamic.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	endpoints := client.Resource(NetworkServiceMesh()[store.KindEndpoint].GVR).Namespace(ns)
	_, w, err := s.ListAndWatch(ctx, store.KindEndpoint, "expiring")
	if err != nil {
		t.Fatal(err)
	}
	create := func(name string, expires time.Time) {
		t.Helper()
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "networkservicemesh.io/v1",
			"kind":       "NetworkServiceEndpoint",
			"metadata":   map[string]any{"name": name},
			"spec": map[string]any{
				"network_service_names": []any{"expiring"},
				"url":                   "tcp://10.0.0.3:5001",
				"expiration_time":       expires.UTC().Format(time.RFC3339Nano),
			},
		}}
		if _, err := endpoints.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	gone := func(name string) bool {
		_, err := endpoints.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}
	begin := time.Now()
	create("past", begin.Add(-time.Minute))
	soon := begin.Add(2 * time.Second)
	create("soon", soon)
	create("later", begin.Add(time.Hour))

	deleted := map[string]time.Time{}
	for len(deleted) < 2 {
		select {
		case ev := <-w.Events:
			if ev.Deleted {
				deleted[ev.Name] = time.Now()
			}
		case <-time.After(patience):
			t.Fatalf("watch saw deletions of %v only", deleted)
		}
	}
	if _, ok := deleted["later"]; ok {
		t.Fatal("the endpoint that expires in an hour was deleted")
	}
	if at, ok := deleted["soon"]; !ok || at.Before(soon) {
		t.Fatalf("soon: deleted at %v, expiration_time %v", at, soon)
	}
	waitFor(t, func() bool { return gone("past") && gone("soon") }, "the expired objects to be deleted from the API")
	if _, err := s.Get(ctx, store.KindEndpoint, "later"); err != nil {
		t.Fatalf("later: %v", err)
	}

	// Written by the store with an hour to live, then expiration_time set
	// to the past with kubectl: the spec wins.
	nse := &registry.NetworkServiceEndpoint{Name: "edited", NetworkServiceNames: []string{"expiring"}, Url: "tcp://10.0.0.4:5001"}
	value, err := proto.Marshal(nse)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, store.KindEndpoint, nse.Name, value, time.Hour, nse.NetworkServiceNames...); err != nil {
		t.Fatal(err)
	}
	got, err := endpoints.Get(ctx, "edited", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(got.Object, time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano), "spec", "expiration_time"); err != nil {
		t.Fatal(err)
	}
	if _, err := endpoints.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("edit: %v", err)
	}
	waitFor(t, func() bool { return gone("edited") }, "the edited endpoint to expire")
}
