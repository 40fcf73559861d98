package kernel

import (
	"fmt"

	"github.com/vishvananda/netns"

	"github.com/vwire/vwire/mechanisms/inodeurl"
)

// openNetNS opens the network namespace a KERNEL mechanism names. The
// dataplane is given paths only: the manager and the forwarder turn the
// inode:// URLs of NSM workloads into the path of the descriptor that came
// with them (file:///proc/<pid>/fd/<n>).
func openNetNS(raw string) (netns.NsHandle, error) {
	u, err := inodeurl.Parse(raw)
	if err != nil {
		return netns.None(), err
	}
	if u.IsInode() {
		return netns.None(), fmt.Errorf("netns %s: an inode URL reached the dataplane without its descriptor; the manager and forwarder give it paths only", raw)
	}
	h, err := netns.GetFromPath(u.Path)
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %s: %w", u.Path, err)
	}
	return h, nil
}
