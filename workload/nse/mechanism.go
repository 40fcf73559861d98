package nse

import (
	"fmt"
	"os"
	"strings"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/common"
	nsmmemif "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/memif"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/memif"
)

// OwnNetNSURL names this process's network namespace as NSM's mechanisms
// do on TCP and for processes that share /proc: file:///proc/<pid>/ns/net.
func OwnNetNSURL() string { return NetNSURL(os.Getpid()) }

// NetNSURL names the network namespace of process pid.
func NetNSURL(pid int) string { return fmt.Sprintf("file:///proc/%d/ns/net", pid) }

// selectMechanism takes the first of the caller's preferences this endpoint
// accepts and fills in the endpoint's side of it: the network namespace the
// dataplane plugs the vWire into (ours), and the interface name (KERNEL) or
// socket name (MEMIF) when the offer leaves it open. Parameters of the
// offer that this endpoint does not set are kept.
func (e *Endpoint) selectMechanism(conn *networkservice.Connection, prefs []*networkservice.Mechanism) (*networkservice.Mechanism, error) {
	for _, pref := range prefs {
		if !e.accepts(pref.GetType()) {
			continue
		}
		m := pref.Clone()
		if m.Parameters == nil {
			m.Parameters = map[string]string{}
		}
		var err error
		switch m.GetType() {
		case kernel.Type:
			if _, err = kernel.FromOffer(m); err != nil {
				break
			}
			if m.Parameters[common.InterfaceNameKey] == "" {
				m.Parameters[common.InterfaceNameKey] = kernel.DefaultName(conn.GetId())
			}
			m.Parameters[common.InodeURL] = e.netns
			_, err = kernel.FromMechanism(m)
		case memif.Type:
			if _, err = memif.FromOffer(m); err != nil {
				break
			}
			if m.Parameters[nsmmemif.SocketFilename] == "" {
				m.Parameters[nsmmemif.SocketFilename] = memif.DefaultSocketFile(conn.GetId())
			}
			m.Parameters[common.InodeURL] = e.netns
			_, err = memif.FromMechanism(m)
		}
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "connection %s: %v", conn.GetId(), err)
		}
		return m, nil
	}
	offered := make([]string, 0, len(prefs))
	for _, p := range prefs {
		offered = append(offered, fmt.Sprintf("%s/%s", p.GetCls(), p.GetType()))
	}
	return nil, status.Errorf(codes.InvalidArgument, "connection %s: no mechanism this endpoint accepts: offered %s, accepted %s",
		conn.GetId(), strings.Join(offered, ", "), strings.Join(e.mechanisms, ", "))
}

func (e *Endpoint) accepts(mechanism string) bool {
	for _, m := range e.mechanisms {
		if m == mechanism {
			return true
		}
	}
	return false
}
