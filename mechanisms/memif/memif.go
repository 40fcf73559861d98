// Package memif is the MEMIF mechanism (class LOCAL): a shared-memory packet
// interface and its control socket. Three forms, told apart by whether
// SocketFile (parameter "socketfile") is set:
//
//   - abstract socket (NSM's form, and vwire's): SocketFile names an
//     abstract unix socket in the network namespace NetNSURL (parameter
//     "inodeURL"). A leading '@' is NSM's notation for it ("@/tmp/memif/x"
//     is the abstract name "/tmp/memif/x"); vwire also takes a name without
//     '@' as abstract when a namespace is named.
//   - shared directory (vwire's): SocketFile alone is a file in a directory
//     the dataplane and the workload share (SocketPath).
//   - socket file (NSM's FS-socket form): no SocketFile; SocketURL (the same
//     "inodeURL" parameter) is file://<path of the socket file>, passed
//     between processes as inode://<dev>/<ino> with its descriptor (grpcfd).
//     A client asks for it with "inodeURL" = "file:" (FileOffer, what NSM's
//     memif.New("") renders); the server creates the socket and answers with
//     its URL.
//
// The side that names the socket listens (memif master): a forwarder
// serving a client always does; towards an endpoint it connects as slave
// when the endpoint named the socket in NSM's way ('@' or a socket file).
// A client's offer may carry just its NetNSURL; the forwarder then fills
// SocketFile (DefaultSocketFile, in NSM's '@' notation), so FromMechanism
// (complete parameters) requires SocketFile or SocketURL.
package memif

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

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

// FileOffer is the "inodeURL" of an offer that asks the server for a
// socket file (NSM's memif.New("")).
const FileOffer = "file:"

// Params are the MEMIF mechanism's parameters.
type Params struct {
	// SocketFile is the socket's name: one path element, no '/', or, after
	// NSM's '@', an abstract name that may hold '/'.
	SocketFile string
	// NetNSURL names the network namespace of an abstract socket.
	NetNSURL string
	// SocketURL names the socket file itself (no SocketFile): a file:// or
	// inode:// URL, or FileOffer in an offer.
	SocketURL string
}

// New renders p as a LOCAL MEMIF mechanism. Empty fields are left out.
func New(p Params) *networkservice.Mechanism {
	params := map[string]string{}
	param.Set(params, nsmmemif.SocketFilename, p.SocketFile)
	param.Set(params, nsmmemif.NetNSURL, p.NetNSURL)
	if p.SocketFile == "" && p.NetNSURL == "" {
		param.Set(params, nsmmemif.SocketFileURL, p.SocketURL)
	}
	return &networkservice.Mechanism{Cls: Class, Type: Type, Parameters: params}
}

// FromMechanism parses complete parameters, ready to build: SocketFile, or
// SocketURL naming a socket file, is required.
func FromMechanism(m *networkservice.Mechanism) (Params, error) {
	p, err := parse(m, true)
	if err != nil {
		return Params{}, err
	}
	if err := p.Validate(); err != nil {
		return Params{}, err
	}
	return p, nil
}

// FromOffer parses parameters offered as a preference: every field may be
// missing, but those present must be well formed. Without "socketfile",
// "inodeURL" is the client's namespace (NSM's abstract offer), or FileOffer.
func FromOffer(m *networkservice.Mechanism) (Params, error) {
	p, err := parse(m, false)
	if err != nil {
		return Params{}, err
	}
	if err := p.ValidateOffer(); err != nil {
		return Params{}, err
	}
	return p, nil
}

func parse(m *networkservice.Mechanism, complete bool) (Params, error) {
	params, err := param.Check(mech, m, Type, Class)
	if err != nil {
		return Params{}, err
	}
	p := Params{SocketFile: params[nsmmemif.SocketFilename]}
	u := params[nsmmemif.NetNSURL]
	switch {
	case p.SocketFile != "":
		p.NetNSURL = u
	case u == FileOffer || complete:
		p.SocketURL = u
	default:
		p.NetNSURL = u
	}
	return p, nil
}

// Validate checks that p is complete and well formed.
func (p Params) Validate() error { return p.check(true) }

// ValidateOffer checks that the fields of p that are set are well formed.
func (p Params) ValidateOffer() error { return p.check(false) }

func (p Params) check(complete bool) error {
	if p.SocketURL != "" && (p.SocketFile != "" || p.NetNSURL != "") {
		return param.Invalid(mech, nsmmemif.SocketFileURL, p.SocketURL, `a socket file URL goes without "socketfile"`)
	}
	if name, ok := strings.CutPrefix(p.SocketFile, "@"); ok {
		if err := checkAbstractName(name); err != nil {
			return param.Invalid(mech, nsmmemif.SocketFilename, p.SocketFile, err.Error())
		}
		if complete && p.NetNSURL == "" {
			return param.Missing(mech, nsmmemif.NetNSURL)
		}
	} else if err := param.CheckFileName(mech, nsmmemif.SocketFilename, p.SocketFile, MaxSocketPathLength, false); err != nil {
		return err
	}
	if p.NetNSURL != "" {
		if _, err := p.NetNS(); err != nil {
			return err
		}
	}
	if p.SocketURL == FileOffer {
		if complete {
			return param.Invalid(mech, nsmmemif.SocketFileURL, p.SocketURL, "names no socket file")
		}
	} else if p.SocketURL != "" {
		if _, err := p.Socket(); err != nil {
			return err
		}
	}
	if complete && p.SocketFile == "" && p.SocketURL == "" {
		return param.Missing(mech, nsmmemif.SocketFilename)
	}
	return nil
}

// checkAbstractName checks the name of an abstract socket after NSM's '@':
// it fills sun_path after a leading NUL, so at most MaxSocketPathLength
// bytes; '/' is allowed, NUL, white space and control characters are not.
func checkAbstractName(name string) error {
	switch {
	case name == "":
		return errors.New("'@' and no name after it")
	case len(name) > MaxSocketPathLength:
		return fmt.Errorf("the abstract name is %d bytes long, at most %d allowed", len(name), MaxSocketPathLength)
	case !utf8.ValidString(name):
		return errors.New("not valid UTF-8")
	}
	for _, r := range name {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return errors.New("white space and control characters are not allowed")
		}
	}
	return nil
}

// Form tells the three forms apart.
type Form int

// The forms of a complete MEMIF mechanism.
const (
	FormSharedDir Form = iota // SocketFile in a shared directory
	FormAbstract              // SocketFile abstract, in NetNSURL's namespace
	FormFile                  // the socket file SocketURL names
)

// Form returns p's form.
func (p Params) Form() Form {
	switch {
	case p.SocketFile == "" && p.SocketURL != "":
		return FormFile
	case p.NetNSURL != "" || strings.HasPrefix(p.SocketFile, "@"):
		return FormAbstract
	}
	return FormSharedDir
}

// NamedByNSM reports whether the socket was named the way NSM's memif
// servers name theirs ('@' or a socket file): its namer listens on it.
func (p Params) NamedByNSM() bool {
	return p.Form() == FormFile || strings.HasPrefix(p.SocketFile, "@")
}

// AbstractName is the abstract socket's name, without NSM's '@'.
func (p Params) AbstractName() string { return strings.TrimPrefix(p.SocketFile, "@") }

// Socket parses p.SocketURL.
func (p Params) Socket() (inodeurl.URL, error) {
	u, err := inodeurl.Parse(p.SocketURL)
	if err != nil {
		return inodeurl.URL{}, param.Invalid(mech, nsmmemif.SocketFileURL, p.SocketURL, inodeurl.Reason(err))
	}
	return u, nil
}

// IsAbstract reports whether the socket is an abstract socket in NetNSURL's
// namespace rather than a file.
func (p Params) IsAbstract() bool { return p.Form() == FormAbstract }

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
