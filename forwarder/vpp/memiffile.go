package vpp

import (
	"fmt"
	"path"

	"github.com/networkservicemesh/api/pkg/api/networkservice"

	"github.com/vwire/vwire/mechanisms/inodeurl"
	"github.com/vwire/vwire/mechanisms/memif"
)

// MEMIF's three forms (mechanisms/memif) as VPP sockets. The side that
// names the socket listens: VPP is master on every socket it names (towards
// a client, and towards a vwire endpoint, which takes the name offered) and
// slave on a socket an endpoint named in NSM's way ('@' abstract name or a
// socket file passed by descriptor): NSM's memif servers are masters.

// acceptMemif completes a client's MEMIF offer: an abstract socket in the
// client's namespace when it names one (named in NSM's '@' notation, which
// NSM's memif clients need to find it), a socket file when it asks for one
// (FileOffer: answered as file://<path>, which the manager passes to the
// client by descriptor), else a file in the shared directory.
func (d *Dataplane) acceptMemif(id string, p *networkservice.Mechanism) (*networkservice.Mechanism, error) {
	params, err := memif.FromOffer(p)
	if err != nil {
		return nil, err
	}
	if params.SocketURL == memif.FileOffer {
		p, err := memif.Params{SocketFile: memif.DefaultSocketFile(id)}.SocketPath(d.memifDir)
		if err != nil {
			return nil, err
		}
		params.SocketURL = inodeurl.File(p).String()
		return memif.New(params), nil
	}
	if params.SocketFile == "" {
		params.SocketFile = memif.DefaultSocketFile(id)
		if params.NetNSURL != "" {
			params.SocketFile = "@" + params.SocketFile
		}
	}
	if err := params.Validate(); err != nil {
		return nil, err
	}
	if params.IsAbstract() {
		if _, err := netnsPath(params.NetNSURL); err != nil {
			return nil, fmt.Errorf("memif: %w", err)
		}
	} else if _, err := params.SocketPath(d.memifDir); err != nil {
		return nil, err
	}
	return memif.New(params), nil
}

// memifSocket returns VPP's socket filename for one side's complete MEMIF
// mechanism, and whether VPP connects to it as slave (an endpoint's socket).
func (d *Dataplane) memifSocket(role string, m *networkservice.Mechanism) (filename string, slave bool, err error) {
	mp, err := memif.FromMechanism(m)
	if err != nil {
		return "", false, err
	}
	slave = role == roleOut && mp.NamedByNSM()
	switch mp.Form() {
	case memif.FormFile:
		u, err := mp.Socket()
		if err != nil {
			return "", false, err
		}
		if u.IsInode() {
			return "", false, fmt.Errorf("memif socket %s: an inode URL reached the dataplane without its descriptor; the manager and forwarder give it paths only", mp.SocketURL)
		}
		if role == roleIn && !slave {
			// Ours to create: only in the directory we own.
			want, err := memif.Params{SocketFile: path.Base(u.Path)}.SocketPath(d.memifDir)
			if err != nil || want != u.Path {
				return "", false, fmt.Errorf("memif socket %s: not in the forwarder's socket directory %s", u.Path, d.memifDir)
			}
		}
		return u.Path, slave, nil
	case memif.FormAbstract:
		ns, err := netnsPath(mp.NetNSURL)
		if err != nil {
			return "", false, err
		}
		return "abstract:" + mp.AbstractName() + ",netns_name=" + ns, slave, nil
	}
	p, err := mp.SocketPath(d.memifDir)
	return p, slave, err
}
