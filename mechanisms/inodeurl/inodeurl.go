// Package inodeurl parses the URLs by which Network Service Mesh names a file
// that one process shares with another: file:///proc/1234/ns/net for a path
// both can open, or inode://<dev>/<ino> for a file handed over a unix socket
// (grpcfd), named by the device and inode numbers its sender sees. The kernel
// and memif mechanisms carry network namespaces this way, under the parameter
// "inodeURL". Parse is strict (absolute clean paths, decimal numbers, nothing
// else in the URL) so that what one side sends, the other reads the same way.
package inodeurl

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Sentinel errors.
var (
	// ErrInvalid: the text is not a file:// or inode:// URL of the accepted form.
	ErrInvalid = errors.New("invalid file URL")
)

// Error is what Parse returns: the text it was given and why it was refused.
// It wraps ErrInvalid.
type Error struct {
	Text   string
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("%v %q: %s", ErrInvalid, e.Text, e.Reason) }

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Reason returns the reason of a Parse error, without the text it was given.
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return err.Error()
}

func bad(s, reason string) error { return &Error{Text: s, Reason: reason} }

// Schemes.
const (
	FileScheme  = "file"
	InodeScheme = "inode"
)

// maxPath bounds a file:// path (Linux's PATH_MAX less the NUL).
const maxPath = 4095

// URL is a parsed file:// or inode:// URL. Exactly one form is set: Path for
// file://, Dev and Ino for inode://.
type URL struct {
	// Path is the absolute, clean path of a file:// URL.
	Path string
	// Dev and Ino are the device and inode numbers of an inode:// URL.
	Dev, Ino uint64
}

// File returns the URL of an absolute path.
func File(p string) URL { return URL{Path: p} }

// Inode returns the URL of the file with device number dev and inode number ino.
func Inode(dev, ino uint64) URL { return URL{Dev: dev, Ino: ino} }

// IsInode reports whether u is an inode:// URL.
func (u URL) IsInode() bool { return u.Path == "" }

// String renders u; Parse(u.String()) gives back u for any URL Parse returned.
func (u URL) String() string {
	if u.IsInode() {
		return InodeScheme + "://" + strconv.FormatUint(u.Dev, 10) + "/" + strconv.FormatUint(u.Ino, 10)
	}
	return (&url.URL{Scheme: FileScheme, Path: u.Path}).String()
}

// Parse parses s, which must be file://<absolute clean path> (percent-encoding
// allowed, no host, query or fragment) or inode://<dev>/<ino> with decimal
// numbers and a non-zero inode.
func Parse(s string) (URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return URL{}, bad(s, unwrap(err).Error())
	}
	if u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "" {
		return URL{}, bad(s, fmt.Sprintf("want %s://<path> or %s://<dev>/<ino> and nothing more", FileScheme, InodeScheme))
	}
	switch u.Scheme {
	case FileScheme:
		return parseFile(s, u)
	case InodeScheme:
		return parseInode(s, u)
	}
	return URL{}, bad(s, fmt.Sprintf("scheme must be %s or %s", FileScheme, InodeScheme))
}

func parseFile(s string, u *url.URL) (URL, error) {
	p := u.Path
	switch {
	case u.Host != "":
		return URL{}, bad(s, "a file URL takes no host (write file:///path)")
	case !strings.HasPrefix(p, "/"):
		return URL{}, bad(s, "the path must be absolute")
	case len(p) > maxPath:
		return URL{}, bad(s, fmt.Sprintf("the path is longer than %d bytes", maxPath))
	case path.Clean(p) != p:
		return URL{}, bad(s, "the path must be clean (no '.', '..', '//' or trailing '/')")
	case !utf8.ValidString(p) || strings.IndexByte(p, 0) >= 0:
		return URL{}, bad(s, "the path must be valid UTF-8 without NUL")
	}
	return URL{Path: p}, nil
}

func parseInode(s string, u *url.URL) (URL, error) {
	ino, ok := strings.CutPrefix(u.Path, "/")
	if !ok || u.RawPath != "" {
		return URL{}, bad(s, fmt.Sprintf("want %s://<dev>/<ino>", InodeScheme))
	}
	d, err1 := decimal(u.Host)
	i, err2 := decimal(ino)
	if err1 != nil || err2 != nil {
		return URL{}, bad(s, "dev and ino must be decimal numbers")
	}
	if i == 0 {
		return URL{}, bad(s, "inode number 0 names no file")
	}
	return URL{Dev: d, Ino: i}, nil
}

// decimal parses digits only (strconv.ParseUint also refuses signs, but an
// explicit check keeps "1:2" hosts and the like out).
func decimal(s string) (uint64, error) {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

func unwrap(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
