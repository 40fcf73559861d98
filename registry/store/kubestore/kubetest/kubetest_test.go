package kubetest

import (
	"encoding/json"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
)

var crds = []string{"../../../../deployments/kubernetes/crd-networkservices.yaml", "../../../../deployments/kubernetes/crd-networkserviceendpoints.yaml"}

// TestDiscovery: /apis lists the server's own group and the installed
// CRDs' in both forms, the aggregated one (client-go's discovery, kubectl
// 1.26+) and the APIGroupList (older kubectl), and the resources are
// found by kind as kubectl apply finds them.
func TestDiscovery(t *testing.T) {
	s := Start(t)
	s.InstallCRDs(t, crds...)
	client, err := discovery.NewDiscoveryClientForConfig(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	_, resources, err := client.ServerGroupsAndResources()
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	var kinds []string
	for _, list := range resources {
		for _, r := range list.APIResources {
			kinds = append(kinds, list.GroupVersion+" "+r.Kind)
		}
	}
	for _, want := range []string{"networkservicemesh.io/v1 NetworkService", "networkservicemesh.io/v1 NetworkServiceEndpoint", "apiextensions.k8s.io/v1 CustomResourceDefinition"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("aggregated discovery lacks %s: %v", want, kinds)
		}
	}

	raw, err := client.RESTClient().Get().AbsPath("/apis").SetHeader("Accept", "application/json").DoRaw(t.Context())
	if err != nil {
		t.Fatalf("GET /apis as APIGroupList: %v", err)
	}
	var list metav1.APIGroupList
	if err := json.Unmarshal(raw, &list); err != nil || list.Kind != "APIGroupList" {
		t.Fatalf("GET /apis: %v, not an APIGroupList:\n%s", err, raw)
	}
	var groups []string
	for _, g := range list.Groups {
		groups = append(groups, g.Name+" "+g.PreferredVersion.GroupVersion)
	}
	for _, want := range []string{"networkservicemesh.io networkservicemesh.io/v1", "apiextensions.k8s.io apiextensions.k8s.io/v1"} {
		if !slices.Contains(groups, want) {
			t.Errorf("APIGroupList lacks %s: %v", want, groups)
		}
	}
}
