package kubestore

import (
	"bytes"
	"os"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/vwire/vwire/registry/store"
)

const (
	seedFile      = "../../manifest/testdata/seed-examples.yaml"
	examplesFile  = "../../../deployments/examples/architecture/networkservices.yaml"
	seedMalformed = 3 // the seed document the schema must refuse
	malformedPath = "spec.matches[2].source_selector.routes"
)

// TestCRDSchemasOnAPIServer creates the architecture's examples and the
// seed documents through the real API server with the project's CRDs:
// all are accepted but the malformed seed document, which is refused with
// its field path. Names with @domain go in as ObjectName makes them.
func TestCRDSchemasOnAPIServer(t *testing.T) {
	srv := startAPI(t)
	client, err := dynamic.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	res := NetworkServiceMesh()
	for _, file := range []string{examplesFile, seedFile} {
		ns := freshNamespace()
		for i, doc := range documents(t, file) {
			n := i + 1
			var obj unstructured.Unstructured
			if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
				t.Fatalf("%s document %d: %v", file, n, err)
			}
			name, ok := ObjectName(obj.GetName())
			if !ok {
				t.Fatalf("%s document %d: name %q has no object name", file, n, obj.GetName())
			}
			obj.SetName(name)
			kind := store.KindService
			if obj.GetKind() == res[store.KindEndpoint].Kind {
				kind = store.KindEndpoint
			}
			// Several seed documents share a name; each goes in alone.
			objects := client.Resource(res[kind].GVR).Namespace(ns)
			_ = objects.Delete(t.Context(), name, metav1.DeleteOptions{})
			_, err := objects.Create(t.Context(), &obj, metav1.CreateOptions{})
			if file == seedFile && n == seedMalformed {
				if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), malformedPath) {
					t.Errorf("%s document %d: error %v, want it refused as invalid at %s", file, n, err, malformedPath)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s document %d (%s): refused: %v", file, n, obj.GetKind(), err)
			}
		}
	}
}

// documents splits a YAML file into its non-empty documents.
func documents(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	for _, d := range bytes.Split(data, []byte("\n---")) {
		var v map[string]any
		if err := yaml.Unmarshal(d, &v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(v) > 0 {
			docs = append(docs, string(d))
		}
	}
	return docs
}
