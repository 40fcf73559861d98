package kernel

import (
	"fmt"

	"github.com/vishvananda/netns"

	"github.com/vwire/vwire/mechanisms/inodeurl"
)

// openNetNS opens the network namespace a KERNEL mechanism names. An
// inode:// URL needs the descriptor that came with the Request; this
// dataplane is given paths (file:///proc/<pid>/ns/net) only.
func openNetNS(raw string) (netns.NsHandle, error) {
	u, err := inodeurl.Parse(raw)
	if err != nil {
		return netns.None(), err
	}
	if u.IsInode() {
		return netns.None(), fmt.Errorf("netns %s: inode URLs need descriptor passing, which this forwarder does not do yet; give a file:// path", raw)
	}
	h, err := netns.GetFromPath(u.Path)
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %s: %w", u.Path, err)
	}
	return h, nil
}
