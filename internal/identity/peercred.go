package identity

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// PeerCred is what the kernel says about the process at the other end of a
// unix socket.
type PeerCred struct {
	PID      int32
	UID, GID uint32
}

// AuthType implements credentials.AuthInfo.
func (PeerCred) AuthType() string { return "peercred" }

// PeerCredentials are transport credentials for the SPIFFE Workload API:
// no TLS (the API is plaintext on a unix socket by specification), but each
// connection records its peer's pid, uid and gid (SO_PEERCRED), which is
// how the server tells workloads apart.
type PeerCredentials struct{}

var _ credentials.TransportCredentials = PeerCredentials{}

// ServerHandshake records the peer's credentials; non-unix connections are refused.
func (PeerCredentials) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, nil, errors.New("workload API: only unix sockets identify their peer")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var cred *syscall.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return nil, nil, err
	}
	if serr != nil {
		return nil, nil, fmt.Errorf("workload API: SO_PEERCRED: %w", serr)
	}
	return c, PeerCred{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, nil
}

// ClientHandshake is not used: the Workload API's clients speak plaintext.
func (PeerCredentials) ClientHandshake(_ context.Context, _ string, c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c, PeerCred{}, nil
}

// Info implements credentials.TransportCredentials.
func (PeerCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

// Clone implements credentials.TransportCredentials.
func (p PeerCredentials) Clone() credentials.TransportCredentials { return p }

// OverrideServerName implements credentials.TransportCredentials.
func (PeerCredentials) OverrideServerName(string) error { return nil }

// IdentifyByPeer names a Workload API caller after its uid and executable:
// spiffe://<td>/workload/uid/<uid>/<executable>, stable across restarts,
// so policy rules can name it.
func IdentifyByPeer(td spiffeid.TrustDomain) func(ctx context.Context) (spiffeid.ID, error) {
	return func(ctx context.Context) (spiffeid.ID, error) {
		p, ok := peer.FromContext(ctx)
		if !ok {
			return spiffeid.ID{}, errors.New("no peer")
		}
		cred, ok := p.AuthInfo.(PeerCred)
		if !ok || cred.PID == 0 {
			return spiffeid.ID{}, errors.New("the caller's process is unknown")
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", cred.PID))
		if err != nil {
			return spiffeid.ID{}, fmt.Errorf("the caller's executable: %w", err)
		}
		return spiffeid.FromSegments(td, "workload", "uid", fmt.Sprint(cred.UID), filepath.Base(exe))
	}
}
