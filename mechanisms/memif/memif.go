// Package memif is the MEMIF mechanism (class LOCAL): a shared-memory packet
// interface whose control socket is SocketFile (parameter "socketfile"). vwire
// uses NSM's abstract-socket form: when NetNSURL (parameter "inodeURL") is set,
// SocketFile is the name of an abstract unix socket in that network namespace;
// when it is not, SocketFile is a file in a directory the dataplane and the
// workload share (see SocketPath). NSM's file-socket form, where "inodeURL"
// names the socket file itself, is not supported: "inodeURL" always names a
// network namespace here. A client's offer may carry just its NetNSURL; the
// forwarder fills SocketFile (DefaultSocketFile), so FromMechanism (complete
// parameters) requires SocketFile.
package memif

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/cls"
	nsmmemif "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/memif"

	"github.com/vwire/vwire/mechanisms/inodeurl"
	"github.com/vwire/vwire/mechanisms/internal/param"
)

// Sentinel errors (shared by all mechanism packages).
var (
	ErrWrongType        = param.ErrWrongType
	ErrWrongClass       = param.ErrWrongClass
	ErrMissingParameter = param.ErrMissing
	ErrInvalidParameter = param.ErrInvalid
)

const (
	// Type is the mechanism type, memif.MECHANISM.
	Type = nsmmemif.MECHANISM
	// Class is the class a MEMIF mechanism must have.
	Class = cls.LOCAL
	// MaxSocketPathLength is the longest unix socket address in bytes: 108
	// bytes of sun_path less the terminating NUL for a file socket, or less
	// the leading NUL for an abstract one. SocketFile alone must fit, and so
	// must dir + "/" + SocketFile for a file socket (SocketPath).
	MaxSocketPathLength = 107

	mech = "memif"
)

// Params are the MEMIF mechanism's parameters.
type Params struct {
	// SocketFile is the socket's name: one path element, no '/'.
	SocketFile string
	// NetNSURL names the network namespace of an abstract socket.
	NetNSURL string
}

// New renders p as a LOCAL MEMIF mechanism. Empty fields are left out.
func New(p Params) *networkservice.Mechanism {
	params := map[string]string{}
	param.Set(params, nsmmemif.SocketFilename, p.SocketFile)
	param.Set(params, nsmmemif.NetNSURL, p.NetNSURL)
	return &networkservice.Mechanism{Cls: Class, Type: Type, Parameters: params}
}

// FromMechanism parses complete parameters, ready to build: SocketFile is
// required.
func FromMechanism(m *networkservice.Mechanism) (Params, error) {
	p, err := parse(m)
	if err != nil {
		return Params{}, err
	}
	if err := p.Validate(); err != nil {
		return Params{}, err
	}
	return p, nil
}

// FromOffer parses parameters offered as a preference: every field may be
// missing, but those present must be well formed.
func FromOffer(m *networkservice.Mechanism) (Params, error) {
	p, err := parse(m)
	if err != nil {
		return Params{}, err
	}
	if err := p.ValidateOffer(); err != nil {
		return Params{}, err
	}
	return p, nil
}

func parse(m *networkservice.Mechanism) (Params, error) {
	params, err := param.Check(mech, m, Type, Class)
	if err != nil {
		return Params{}, err
	}
	return Params{
		SocketFile: params[nsmmemif.SocketFilename],
		NetNSURL:   params[nsmmemif.NetNSURL],
	}, nil
}

// Validate checks that p is complete and well formed.
func (p Params) Validate() error { return p.check(true) }

// ValidateOffer checks that the fields of p that are set are well formed.
func (p Params) ValidateOffer() error { return p.check(false) }

func (p Params) check(complete bool) error {
	if err := param.CheckFileName(mech, nsmmemif.SocketFilename, p.SocketFile, MaxSocketPathLength, false); err != nil {
		return err
	}
	if p.NetNSURL != "" {
		if _, err := p.NetNS(); err != nil {
			return err
		}
	}
	if complete && p.SocketFile == "" {
		return param.Missing(mech, nsmmemif.SocketFilename)
	}
	return nil
}

// IsAbstract reports whether the socket is an abstract socket in NetNSURL's
// namespace rather than a file.
func (p Params) IsAbstract() bool { return p.NetNSURL != "" }

// NetNS parses p.NetNSURL.
func (p Params) NetNS() (inodeurl.URL, error) {
	u, err := inodeurl.Parse(p.NetNSURL)
	if err != nil {
		return inodeurl.URL{}, param.Invalid(mech, nsmmemif.NetNSURL, p.NetNSURL, inodeurl.Reason(err))
	}
	return u, nil
}

// SocketPath returns where a file socket lives: dir + "/" + SocketFile. dir
// must be absolute and the whole path at most MaxSocketPathLength bytes.
func (p Params) SocketPath(dir string) (string, error) {
	if err := param.CheckFileName(mech, nsmmemif.SocketFilename, p.SocketFile, MaxSocketPathLength, true); err != nil {
		return "", err
	}
	if !strings.HasPrefix(dir, "/") {
		return "", fmt.Errorf("%s: socket directory %s is not an absolute path", mech, param.Quote(dir))
	}
	full := path.Join(dir, p.SocketFile)
	if len(full) > MaxSocketPathLength {
		return "", param.Invalid(mech, nsmmemif.SocketFilename, p.SocketFile,
			fmt.Sprintf("socket path %s is %d bytes long, at most %d allowed", param.Quote(full), len(full), MaxSocketPathLength))
	}
	return full, nil
}

// DefaultSocketFile is the socket name used when none is given: "memif-" and
// the first 16 hex digits of the SHA-256 of connID, stable across restarts so
// a restarted forwarder recognises its sockets.
func DefaultSocketFile(connID string) string {
	sum := sha256.Sum256([]byte(connID))
	return "memif-" + hex.EncodeToString(sum[:8])
}
