package forwarder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/edwarnicke/grpcfd"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/common"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/mechanisms/inodeurl"
)

// Descriptor passing with the next hop, as NSM's workloads do it (grpcfd
// over the unix socket): an endpoint names its namespace (or memif socket)
// inode://<dev>/<ino> in its reply and sends the descriptor beside it; it
// expects the same descriptor beside every later call that names that URL
// (refresh, Close), or its recvfd waits for it.

// replyFDWait bounds the wait for a descriptor named in a reply. The
// descriptor travels ahead of the reply's bytes on the same socket, so it
// is there by the time the reply is read unless it was never sent.
const replyFDWait = 500 * time.Millisecond

// Sentinel errors: why a next hop's answer cannot be used.
var (
	ErrNoDescriptor = errors.New("the descriptor did not come with the reply")
	ErrForeignPath  = errors.New("names a path in the next hop's own /proc, which this forwarder cannot open; the next hop must pass the descriptor (grpcfd, NSM's sendfd)")
)

// fileSet holds descriptors a next hop passed, by the inode:// URL it
// named them with. Owned by one vwire; closed when it goes.
type fileSet map[string]*os.File

func (s fileSet) close() {
	for _, f := range s {
		f.Close()
	}
}

// localMechanism takes the descriptor of each inode:// URL in a next hop's
// reply mechanism and returns the mechanism as this process can open it
// (file:///proc/<pid>/fd/<n>) and the descriptors. One the vwire holds
// already (have: a refresh) is reused, so the path the dataplane sees does
// not change under a live vWire.
func localMechanism(ctx context.Context, p *peer.Peer, m *networkservice.Mechanism, have fileSet) (*networkservice.Mechanism, fileSet, error) {
	raw, ok := m.GetParameters()[common.InodeURL]
	if !ok {
		return m, nil, nil
	}
	u, err := inodeurl.Parse(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("mechanism %s %s: %w", m.GetType(), common.InodeURL, err)
	}
	if !u.IsInode() {
		if strings.HasPrefix(u.Path, "/proc/self/") || strings.HasPrefix(u.Path, "/proc/thread-self/") {
			return nil, nil, fmt.Errorf("mechanism %s %s %s %w", m.GetType(), common.InodeURL, raw, ErrForeignPath)
		}
		return m, nil, nil
	}
	f := have[raw]
	if f == nil {
		if f, err = receive(ctx, p, raw); err != nil {
			return nil, nil, fmt.Errorf("mechanism %s %s %s: %w", m.GetType(), common.InodeURL, raw, err)
		}
	}
	local := proto.Clone(m).(*networkservice.Mechanism)
	local.Parameters[common.InodeURL] = (&inodeurl.URL{Path: f.Name()}).String()
	return local, fileSet{raw: f}, nil
}

// receive takes the descriptor named raw from the connection a reply came on.
func receive(ctx context.Context, p *peer.Peer, raw string) (*os.File, error) {
	recv, ok := grpcfd.FromPeer(p)
	if !ok {
		return nil, fmt.Errorf("%w: the connection to the next hop passes no descriptors (not a unix socket)", ErrNoDescriptor)
	}
	ch, err := recv.RecvFileByURL(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDescriptor, err)
	}
	t := time.NewTimer(replyFDWait)
	defer t.Stop()
	select {
	case f := <-ch:
		if f != nil {
			return f, nil
		}
		return nil, fmt.Errorf("%w: the connection closed", ErrNoDescriptor)
	case <-t.C:
		return nil, ErrNoDescriptor
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", ErrNoDescriptor, ctx.Err())
	}
}

// sendFiles returns the call option that sends, beside a call to the next
// hop, the descriptor of every inode:// URL in mechs that files holds (NSM's
// sendfd client does the same), so that the next hop's recvfd finds them.
func sendFiles(files fileSet, mechs ...*networkservice.Mechanism) []grpc.CallOption {
	if len(files) == 0 {
		return nil
	}
	creds := grpcfd.PerRPCCredentials(nil)
	sender, _ := grpcfd.FromPerRPCCredentials(creds)
	sent := map[string]bool{}
	for _, m := range mechs {
		raw := m.GetParameters()[common.InodeURL]
		if f := files[raw]; f != nil && !sent[raw] {
			sent[raw] = true
			// Errors come only once the call is under way; a descriptor
			// that fails to go shows as the next hop's error.
			sender.SendFile(f)
		}
	}
	if len(sent) == 0 {
		return nil
	}
	return []grpc.CallOption{grpc.PerRPCCredentials(creds)}
}
