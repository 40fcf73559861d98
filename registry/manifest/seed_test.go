package manifest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/registry"
)

const seedFile = "testdata/seed-examples.yaml"

func readSeed(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestSeedCopyIsCurrent keeps testdata/seed-examples.yaml identical to the
// shared seed file next to the repository (../shared from the repo root).
func TestSeedCopyIsCurrent(t *testing.T) {
	shared := filepath.Join("..", "..", "..", "shared", "seed-examples.yaml")
	want, err := os.ReadFile(shared)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s is absent (no shared folder next to the repository): cannot check that %s is current", shared, seedFile)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := readSeed(t); !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s: copy it again", seedFile, shared)
	}
}

// seedDocuments splits the seed file at its `---` lines, keeping each
// document's text; the comment block before the first marker is dropped.
func seedDocuments(t testing.TB) []string {
	t.Helper()
	parts := strings.Split(string(readSeed(t)), "\n---\n")
	if len(parts) != 7 {
		t.Fatalf("seed file has %d parts, want a header and 6 documents", len(parts))
	}
	return parts[1:]
}

const asWrittenMarker = "AS WRITTEN"

func TestDecodeSeedRejectsAsWrittenDocument(t *testing.T) {
	objs, err := Decode("seed-examples.yaml", readSeed(t))
	if objs != nil {
		t.Errorf("got %d objects alongside the error, want none", len(objs))
	}
	var me *Error
	if !errors.As(err, &me) {
		t.Fatalf("error %v (%T) is not a *manifest.Error", err, err)
	}
	want := Error{
		File: "seed-examples.yaml",
		Doc:  3,
		Line: 34,
		Path: "spec.matches[2].source_selector.routes",
		Msg:  "selector value must be a string, got a list",
	}
	if *me != want {
		t.Errorf("error = %+v\nwant    %+v", *me, want)
	}
	const wantText = "seed-examples.yaml: document 3 (line 34): spec.matches[2].source_selector.routes: selector value must be a string, got a list"
	if err.Error() != wantText {
		t.Errorf("error text\n got %s\nwant %s", err, wantText)
	}
}

func TestDecodeEachSeedDocument(t *testing.T) {
	for i, doc := range seedDocuments(t) {
		objs, err := Decode("seed", []byte(doc))
		if strings.Contains(doc, asWrittenMarker) {
			if err == nil {
				t.Errorf("document %d (as written) decoded without error", i+1)
			}
			continue
		}
		if err != nil {
			t.Errorf("document %d: %v", i+1, err)
			continue
		}
		if len(objs) != 1 {
			t.Errorf("document %d: got %d objects, want 1", i+1, len(objs))
		}
	}
}

func TestDecodeSeedWithoutAsWrittenDocument(t *testing.T) {
	var kept []string
	for _, doc := range seedDocuments(t) {
		if !strings.Contains(doc, asWrittenMarker) {
			kept = append(kept, doc)
		}
	}
	input := "---\n" + strings.Join(kept, "\n---\n")
	objs, err := Decode("seed", []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	lines := apiVersionLines(input)
	nodeName := map[string]string{"nodeName": "{{  .nodeName }}"}
	want := []Object{
		{Kind: KindService, Service: &registry.NetworkService{Name: "simple-network-service", Payload: "IP"}},
		{Kind: KindService, Service: &registry.NetworkService{
			Name:    "service-mesh@finance.example.com",
			Payload: "IP",
			Matches: []*registry.Match{
				{
					SourceSelector: map[string]string{"service": "envoy-proxy"},
					Routes:         []*registry.Destination{{DestinationSelector: map[string]string{"service": "vl3"}}},
				},
				{Routes: []*registry.Destination{{DestinationSelector: map[string]string{"service": "envoy-proxy"}}}},
			},
		}},
		{Kind: KindService, Service: &registry.NetworkService{
			Name:    "secure-vl3@sales.example.com",
			Payload: "IP",
			Matches: []*registry.Match{
				{
					SourceSelector: map[string]string{"app": "foo", "version": "v1.1"},
					Routes:         []*registry.Destination{{DestinationSelector: map[string]string{"provides": "ips"}}},
				},
				{
					SourceSelector: map[string]string{"provided": "ips"},
					Routes:         []*registry.Destination{{DestinationSelector: map[string]string{"provides": "vl3"}}},
				},
				{Routes: []*registry.Destination{{DestinationSelector: map[string]string{"provides": "vl3"}}}},
			},
		}},
		{Kind: KindService, Service: &registry.NetworkService{
			Name:    "local-vl3@marketing.example.com",
			Payload: "IP",
			Matches: []*registry.Match{
				{Routes: []*registry.Destination{{DestinationSelector: nodeName}}},
			},
		}},
		{Kind: KindService, Service: &registry.NetworkService{
			Name:    "local-vl3@marketing.example.com",
			Payload: "IP",
			Matches: []*registry.Match{
				{Routes: []*registry.Destination{{DestinationSelector: nodeName}}},
				{Routes: []*registry.Destination{{DestinationSelector: map[string]string{"supplier": "true"}}}},
			},
		}},
	}
	if len(lines) != len(want) {
		t.Fatalf("test input has %d apiVersion lines, want %d", len(lines), len(want))
	}
	for i := range want {
		want[i].Doc, want[i].Line = i+1, lines[i]
	}
	checkObjects(t, objs, want)
	// Empty selectors are empty, not absent-with-a-key.
	for _, m := range objs[4].Service.GetMatches() {
		if len(m.GetSourceSelector()) != 0 {
			t.Errorf("source_selector = %v, want empty", m.GetSourceSelector())
		}
	}
}

// apiVersionLines returns the 1-based lines that start with apiVersion.
func apiVersionLines(s string) []int {
	var lines []int
	for i, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "apiVersion:") {
			lines = append(lines, i+1)
		}
	}
	return lines
}
