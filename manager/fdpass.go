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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// fdWait bounds how long a descriptor named in a Request may take to arrive.
const fdWait = 5 * time.Second

// receiveFiles takes the descriptors NSM clients send beside a Request on
// the unix socket (grpcfd): a mechanism parameter `inodeURL` of the form
// inode://<dev>/<ino> names one. Each is replaced by a path the forwarder,
// on the same host, can open: file:///proc/<manager pid>/fd/<n>. The files
// stay open for the connection's life; the caller closes them.
func receiveFiles(ctx context.Context, prefs []*networkservice.Mechanism) ([]*networkservice.Mechanism, []*os.File, error) {
	var files []*os.File
	out := make([]*networkservice.Mechanism, len(prefs))
	for i, p := range prefs {
		out[i] = p
		u := p.GetParameters()[common.InodeURL]
		if !strings.HasPrefix(u, "inode://") {
			continue
		}
		f, err := receiveFile(ctx, u)
		if err != nil {
			closeFiles(files)
			return nil, nil, status.Errorf(codes.InvalidArgument, "mechanism_preferences[%d]: %s: %v", i, u, err)
		}
		files = append(files, f)
		m := proto.Clone(p).(*networkservice.Mechanism)
		m.Parameters[common.InodeURL] = fmt.Sprintf("file:///proc/%d/fd/%d", os.Getpid(), f.Fd())
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
	select {
	case f := <-ch:
		if f != nil {
			return f, nil
		}
	case <-time.After(fdWait):
	case <-ctx.Done():
	}
	return nil, fmt.Errorf("the descriptor did not arrive")
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
