package manager

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/edwarnicke/grpcfd"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/common"
	nsmmemif "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/memif"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/internal/connpath"
	"github.com/vwire/vwire/mechanisms/inodeurl"
)

// fdWait bounds how long a descriptor named in a Request may take to arrive.
const fdWait = 5 * time.Second

// clientFiles are the descriptors a client passed (its netns, a memif
// socket), by the inode:// URL it named each with. They stay open while
// the connection lives.
type clientFiles map[string]*os.File

// closeExcept closes the files that keep does not hold.
func (s clientFiles) closeExcept(keep clientFiles) {
	for u, f := range s {
		if keep[u] != f {
			f.Close()
		}
	}
}

// receiveFiles takes the descriptors NSM clients send beside a Request on
// the unix socket (grpcfd): a mechanism parameter `inodeURL` of the form
// inode://<dev>/<ino> names one. Each is replaced by a path the forwarder,
// on the same host, can open: file:///proc/<manager pid>/fd/<n>. A URL the
// connection holds a descriptor for already (held: a refresh) keeps it, so
// the path does not change under a live vWire. The caller owns the
// returned files (those from held among them).
func receiveFiles(ctx context.Context, prefs []*networkservice.Mechanism, held clientFiles) ([]*networkservice.Mechanism, clientFiles, error) {
	files := clientFiles{}
	out := make([]*networkservice.Mechanism, len(prefs))
	for i, p := range prefs {
		out[i] = p
		u := p.GetParameters()[common.InodeURL]
		if !strings.HasPrefix(u, "inode://") {
			continue
		}
		f := files[u]
		if f == nil {
			f = held[u]
		}
		if f == nil {
			var err error
			if f, err = receiveFile(ctx, u); err != nil {
				files.closeExcept(held)
				return nil, nil, status.Errorf(codes.InvalidArgument, "mechanism_preferences[%d]: %s: %v", i, u, err)
			}
		}
		files[u] = f
		m := proto.Clone(p).(*networkservice.Mechanism)
		m.Parameters[common.InodeURL] = inodeurl.File(f.Name()).String()
		out[i] = m
	}
	return out, files, nil
}

// receiveFile waits for the descriptor named by an inode:// URL.
func receiveFile(ctx context.Context, u string) (*os.File, error) {
	recv, ok := grpcfd.FromContext(ctx)
	if !ok {
		return nil, fmt.Errorf("descriptors travel only over the manager's unix socket")
	}
	ch, err := recv.RecvFileByURL(u)
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(fdWait)
	defer t.Stop()
	select {
	case f := <-ch:
		if f != nil {
			return f, nil
		}
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, fmt.Errorf("the descriptor did not arrive")
}

// clientView returns conn as the client named its files: each path of a
// descriptor it passed back to its inode:// URL (NSM's sendfd client maps
// that URL back to its own path; a path in the manager's /proc would mean
// nothing to it).
//
// The view shares what it does not change with conn (connpath.View),
// which a manager never changes once stored.
func clientView(conn *networkservice.Connection, files clientFiles) (*networkservice.Connection, *os.File) {
	view := connpath.View(conn)
	p := view.GetMechanism().GetParameters()[common.InodeURL]
	for u, f := range files {
		if p != "" && p == inodeurl.File(f.Name()).String() {
			view.Mechanism = proto.Clone(view.GetMechanism()).(*networkservice.Mechanism)
			view.Mechanism.Parameters[common.InodeURL] = u
			return view, f
		}
	}
	return view, nil
}

// toClient returns the reply for the client: in its own names, with the
// descriptor beside it as NSM's managers send it (sendfd), for a client
// that resolves the URL with recvfd. A memif socket file the forwarder
// made for the client (NSM's FS-socket form) goes the same way: named
// inode://<dev>/<ino>, its descriptor beside the reply.
func toClient(ctx context.Context, conn *networkservice.Connection, files clientFiles) *networkservice.Connection {
	view, f := clientView(conn, files)
	sender, ok := grpcfd.FromContext(ctx)
	if f != nil {
		if ok {
			sender.SendFile(f)
		}
		return view
	}
	sock, u, err := socketFile(view.GetMechanism())
	if err != nil || sock == nil {
		return view
	}
	defer sock.Close() // SendFile sends a duplicate
	view.Mechanism = proto.Clone(view.GetMechanism()).(*networkservice.Mechanism)
	view.Mechanism.Parameters[common.InodeURL] = u
	if ok {
		sender.SendFile(sock)
	}
	return view
}

// socketFile opens the memif socket file a MEMIF mechanism in NSM's
// FS-socket form names (no "socketfile"; "inodeURL" the file), O_PATH as
// a socket opens no other way, and returns it with its inode:// URL. nil
// for any other mechanism.
func socketFile(m *networkservice.Mechanism) (*os.File, string, error) {
	params := m.GetParameters()
	if m.GetType() != nsmmemif.MECHANISM || params[nsmmemif.SocketFilename] != "" {
		return nil, "", nil
	}
	u, err := inodeurl.Parse(params[nsmmemif.SocketFileURL])
	if err != nil || u.IsInode() {
		return nil, "", nil
	}
	f, err := os.OpenFile(u.Path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", fmt.Errorf("memif socket file: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, "", fmt.Errorf("memif socket file: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		f.Close()
		return nil, "", nil
	}
	return f, inodeurl.Inode(st.Dev, st.Ino).String(), nil
}
