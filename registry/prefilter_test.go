package registry

import (
	"fmt"
	"math/rand/v2"
	"testing"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/registry/store"
)

// The prefilter may pass records that do not match, never drop one that
// does: for random endpoints and queries, MatchEndpoint implies the
// prefilter.
func TestEndpointPrefilterNeverDropsAMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	labels := func() map[string]string {
		l := map[string]string{}
		for range r.IntN(3) {
			l[pick("app", "version", "nodeName")] = pick("a", "b", "v1", "node1")
		}
		return l
	}
	endpoint := func(i int) *regapi.NetworkServiceEndpoint {
		nse := &regapi.NetworkServiceEndpoint{Name: fmt.Sprintf("nse-%d", i%5), Url: pick("tcp://10.0.0.1:5001", "unix:///x.sock"),
			NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{}}
		for range 1 + r.IntN(2) {
			svc := pick("icmp", "vl3", "secure-vl3")
			nse.NetworkServiceNames = append(nse.NetworkServiceNames, svc)
			if r.IntN(2) == 0 {
				nse.NetworkServiceLabels[svc] = &regapi.NetworkServiceLabels{Labels: labels()}
			}
		}
		return nse
	}
	matched, passed := 0, 0
	for i := range 5000 {
		nse, q := endpoint(i), endpoint(i+r.IntN(3))
		if r.IntN(2) == 0 {
			q.Name = ""
		}
		if r.IntN(2) == 0 {
			q.Url = ""
		}
		value, err := proto.Marshal(nse)
		if err != nil {
			t.Fatal(err)
		}
		pre := endpointPrefilter(q)
		ok := pre == nil || pre(store.Entry{Name: nse.GetName(), Value: value})
		if ok {
			passed++
		}
		if MatchEndpoint(q, nse) {
			matched++
			if !ok {
				t.Fatalf("prefilter dropped a match:\nquery %v\nendpoint %v", q, nse)
			}
		}
	}
	if matched == 0 || passed == 5000 {
		t.Fatalf("%d matches, %d passed the prefilter: the cases test nothing", matched, passed)
	}
	t.Logf("%d of 5000 matched; %d passed the prefilter", matched, passed)
}
