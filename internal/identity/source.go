package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// EnvWorkloadAPISocket is the variable SPIFFE workloads read the Workload API address from.
const EnvWorkloadAPISocket = "SPIFFE_ENDPOINT_SOCKET"

// DefaultSVIDTTL is the lifetime of SVIDs minted by the development CA.
const DefaultSVIDTTL = time.Hour

// Source supplies the current X.509-SVID and trust bundles. GetX509SVID is
// called on every TLS handshake, so a rotated SVID is used by the next
// connection without a restart.
type Source interface {
	x509svid.Source
	x509bundle.Source
	// ID is the SPIFFE ID of the current SVID.
	ID() spiffeid.ID
	// TrustDomain is the trust domain of this workload.
	TrustDomain() spiffeid.TrustDomain
	// Close stops rotation; safe to call twice.
	Close() error
}

// Config selects and configures an identity source.
type Config struct {
	// WorkloadAPISocket, when set, takes the identity from the SPIFFE Workload
	// API at that address (unix:///path or a bare path). New reads
	// SPIFFE_ENDPOINT_SOCKET when it is empty.
	WorkloadAPISocket string
	// SVIDDir reads svid.pem, svid-key.pem and bundle.pem from a directory
	// (what `vwire identity issue` writes); files are re-read when they change.
	SVIDDir string
	// StateDir holds the development CA (StateDir/ca).
	StateDir string
	// TrustDomain of the development CA; empty means the CA's own or DefaultTrustDomain.
	TrustDomain string
	// Component names this process: its SVID is spiffe://<td>/vwire/<component>.
	Component string
	// CreateCA lets a server create the development CA when there is none.
	CreateCA bool
	// SVIDTTL is the lifetime of development SVIDs (DefaultSVIDTTL when zero).
	SVIDTTL time.Duration
	Logger  *slog.Logger
}

// New returns the identity source Config describes, in this order of
// preference: Workload API, SVID files, development CA.
func New(ctx context.Context, cfg Config) (Source, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	socket := cfg.WorkloadAPISocket
	if socket == "" && cfg.SVIDDir == "" {
		socket = os.Getenv(EnvWorkloadAPISocket)
	}
	switch {
	case socket != "":
		return NewWorkloadAPISource(ctx, socket)
	case cfg.SVIDDir != "":
		return NewFileSource(cfg.SVIDDir)
	}
	ca, err := OpenCA(cfg.StateDir, cfg.TrustDomain, cfg.CreateCA)
	if err != nil {
		if errors.Is(err, ErrNoCA) {
			return nil, fmt.Errorf("identity: no identity available: %w (set %s, or --state-dir to a vwire state directory)", err, EnvWorkloadAPISocket)
		}
		return nil, err
	}
	id, err := ca.ComponentID(cfg.Component)
	if err != nil {
		return nil, fmt.Errorf("identity: component %q: %w", cfg.Component, err)
	}
	return NewCASource(ca, id, cfg.SVIDTTL, log)
}

// CASource mints its SVIDs from a development CA and renews them at half
// their lifetime.
type CASource struct {
	ca   *CA
	id   spiffeid.ID
	ttl  time.Duration
	log  *slog.Logger
	svid atomic.Pointer[x509svid.SVID]

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// NewCASource issues a first SVID for id and keeps renewing it until Close.
func NewCASource(ca *CA, id spiffeid.ID, ttl time.Duration, log *slog.Logger) (*CASource, error) {
	if ttl == 0 {
		ttl = DefaultSVIDTTL
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	svid, err := ca.Issue(id, ttl)
	if err != nil {
		return nil, err
	}
	s := &CASource{ca: ca, id: id, ttl: ttl, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	s.svid.Store(svid)
	go s.rotate()
	return s, nil
}

func (s *CASource) rotate() {
	defer close(s.done)
	issued := time.Now()
	for {
		cert := s.svid.Load().Certificates[0]
		// Renew at half the lifetime left at issue (NotBefore is backdated
		// for clock skew, so it is not the issue time): a failed renewal
		// then has the other half to succeed before anything expires.
		wait := time.Until(issued.Add(cert.NotAfter.Sub(issued) / 2))
		select {
		case <-s.stop:
			return
		case <-time.After(wait):
		}
		svid, err := s.ca.Issue(s.id, s.ttl)
		if err != nil {
			s.log.Error("identity: renew SVID", "id", s.id.String(), "err", err)
			select {
			case <-s.stop:
				return
			case <-time.After(time.Second):
			}
			continue
		}
		s.svid.Store(svid)
		issued = time.Now()
		s.log.Debug("identity: SVID renewed", "id", s.id.String(), "not_after", svid.Certificates[0].NotAfter)
	}
}

// GetX509SVID implements x509svid.Source.
func (s *CASource) GetX509SVID() (*x509svid.SVID, error) { return s.svid.Load(), nil }

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *CASource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != s.ca.td {
		return nil, fmt.Errorf("identity: no bundle for trust domain %q", td)
	}
	return s.ca.Bundle(), nil
}

// ID implements Source.
func (s *CASource) ID() spiffeid.ID { return s.id }

// TrustDomain implements Source.
func (s *CASource) TrustDomain() spiffeid.TrustDomain { return s.ca.td }

// CA is the development CA behind this source.
func (s *CASource) CA() *CA { return s.ca }

// Close implements Source.
func (s *CASource) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

// WorkloadAPISource takes the identity from a SPIFFE Workload API (SPIRE
// agent or vwire's own), which pushes rotated SVIDs.
type WorkloadAPISource struct {
	*workloadapi.X509Source
}

// NewWorkloadAPISource connects to the Workload API at socket and waits for
// the first SVID (bounded by ctx).
func NewWorkloadAPISource(ctx context.Context, socket string) (*WorkloadAPISource, error) {
	addr := socket
	if filepath.IsAbs(addr) {
		addr = "unix://" + addr
	}
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(addr)))
	if err != nil {
		return nil, fmt.Errorf("identity: workload API at %s: %w", socket, err)
	}
	return &WorkloadAPISource{X509Source: src}, nil
}

// ID implements Source.
func (s *WorkloadAPISource) ID() spiffeid.ID {
	svid, err := s.GetX509SVID()
	if err != nil {
		return spiffeid.ID{}
	}
	return svid.ID
}

// TrustDomain implements Source.
func (s *WorkloadAPISource) TrustDomain() spiffeid.TrustDomain { return s.ID().TrustDomain() }

// FileSource reads an SVID and bundle from files, re-reading them when their
// modification time changes, so an external rotator can replace them.
type FileSource struct {
	dir string

	mu     sync.Mutex // guards the fields below
	mtime  time.Time
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

// NewFileSource loads dir/svid.pem, dir/svid-key.pem and dir/bundle.pem.
func NewFileSource(dir string) (*FileSource, error) {
	s := &FileSource{dir: dir}
	if _, _, err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileSource) load() (*x509svid.SVID, *x509bundle.Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var newest time.Time
	for _, name := range []string{SVIDCertFile, SVIDKeyFile, BundleFile} {
		fi, err := os.Stat(filepath.Join(s.dir, name))
		if err != nil {
			if s.svid != nil {
				return s.svid, s.bundle, nil // keep serving the last good one
			}
			return nil, nil, fmt.Errorf("identity: %w", err)
		}
		if fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
	}
	if s.svid != nil && newest.Equal(s.mtime) {
		return s.svid, s.bundle, nil
	}
	svid, err := x509svid.Load(filepath.Join(s.dir, SVIDCertFile), filepath.Join(s.dir, SVIDKeyFile))
	if err == nil {
		var bundle *x509bundle.Bundle
		bundle, err = x509bundle.Load(svid.ID.TrustDomain(), filepath.Join(s.dir, BundleFile))
		if err == nil {
			s.svid, s.bundle, s.mtime = svid, bundle, newest
			return svid, bundle, nil
		}
	}
	if s.svid != nil {
		return s.svid, s.bundle, nil // a half-written rotation: keep the last good one
	}
	return nil, nil, fmt.Errorf("identity: load SVID from %s: %w", s.dir, err)
}

// GetX509SVID implements x509svid.Source.
func (s *FileSource) GetX509SVID() (*x509svid.SVID, error) {
	svid, _, err := s.load()
	return svid, err
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *FileSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	_, bundle, err := s.load()
	if err != nil {
		return nil, err
	}
	if bundle.TrustDomain() != td {
		return nil, fmt.Errorf("identity: no bundle for trust domain %q", td)
	}
	return bundle, nil
}

// ID implements Source.
func (s *FileSource) ID() spiffeid.ID {
	svid, _, err := s.load()
	if err != nil {
		return spiffeid.ID{}
	}
	return svid.ID
}

// TrustDomain implements Source.
func (s *FileSource) TrustDomain() spiffeid.TrustDomain { return s.ID().TrustDomain() }

// Close implements Source.
func (s *FileSource) Close() error { return nil }
