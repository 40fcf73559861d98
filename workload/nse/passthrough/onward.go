package passthrough

import (
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"

	"github.com/vwire/vwire/workload/nse/managerclient"
)

// Onward is how a passthrough reaches the next hop: the node manager's
// NetworkService API, as a client.
type Onward = managerclient.Manager

// expiresAfter is the expiry to give the onward segment: the incoming
// connection's previous hop's, so that the onward connection lives exactly
// as long as the incoming one unless refreshed with it; ttl from now when
// the path does not say.
func expiresAfter(conn *networkservice.Connection, now time.Time, ttl time.Duration) time.Time {
	path := conn.GetPath()
	if i := int(path.GetIndex()); i > 0 && i <= len(path.GetPathSegments()) {
		if e := path.GetPathSegments()[i-1].GetExpires(); e != nil && e.AsTime().After(now) {
			return e.AsTime()
		}
	}
	return now.Add(ttl)
}
