// Package identity gives every vwire listener and dialer a SPIFFE X.509 identity:
// from the SPIFFE Workload API when SPIFFE_ENDPOINT_SOCKET is set (SPIRE), or from
// a development CA kept in a state directory. It builds the mTLS configurations
// that all gRPC hops use; certificates rotate without restarting anything.
package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// DefaultTrustDomain is the trust domain of a development CA created without one.
const DefaultTrustDomain = "vwire.local"

// caValidity is how long a development CA certificate is valid.
const caValidity = 10 * 365 * 24 * time.Hour

// File names inside <state-dir>/ca.
const (
	caDirName  = "ca"
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

// ErrNoCA is returned by OpenCA when the state directory holds no CA and
// creation was not asked for.
var ErrNoCA = errors.New("no development CA in state directory")

// CA is a development certificate authority for one trust domain. It mints
// short-lived X.509-SVIDs for vwire's own components and for other workloads.
type CA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  crypto.Signer
}

// OpenCA loads the CA kept in stateDir/ca. When there is none and create is
// true, it makes one for trustDomain (DefaultTrustDomain when empty). When a
// CA exists and trustDomain is non-empty, the two must agree. Creation is
// guarded by a file lock so that processes starting together share one CA.
func OpenCA(stateDir, trustDomain string, create bool) (*CA, error) {
	dir := filepath.Join(stateDir, caDirName)
	ca, err := loadCA(dir)
	switch {
	case err == nil:
		return ca, checkTrustDomain(ca, trustDomain)
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	case !create:
		return nil, fmt.Errorf("%w %s", ErrNoCA, stateDir)
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("identity: create CA directory: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another process may have created it while we waited for the lock.
	if ca, err := loadCA(dir); err == nil {
		return ca, checkTrustDomain(ca, trustDomain)
	}
	if trustDomain == "" {
		trustDomain = DefaultTrustDomain
	}
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return nil, fmt.Errorf("identity: trust domain %q: %w", trustDomain, err)
	}
	ca, err = newCA(td)
	if err != nil {
		return nil, err
	}
	if err := ca.save(dir); err != nil {
		return nil, err
	}
	return ca, nil
}

func checkTrustDomain(ca *CA, want string) error {
	if want != "" && want != ca.td.Name() {
		return fmt.Errorf("identity: state directory holds a CA for trust domain %q, not %q", ca.td.Name(), want)
	}
	return nil
}

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("identity: open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("identity: lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func newCA(td spiffeid.TrustDomain) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Organization: []string{"vwire"}, CommonName: "vwire development CA " + td.Name()},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("identity: self-sign CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("identity: parse CA: %w", err)
	}
	return &CA{td: td, cert: cert, key: key}, nil
}

func loadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, fmt.Errorf("identity: %s: no PEM certificate", caCertFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("identity: parse %s: %w", caCertFile, err)
	}
	kblock, _ := pem.Decode(keyPEM)
	if kblock == nil {
		return nil, fmt.Errorf("identity: %s: no PEM key", caKeyFile)
	}
	key, err := x509.ParsePKCS8PrivateKey(kblock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("identity: parse %s: %w", caKeyFile, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("identity: %s: key is not a signer", caKeyFile)
	}
	if len(cert.URIs) != 1 {
		return nil, fmt.Errorf("identity: %s: want one SPIFFE URI, got %d", caCertFile, len(cert.URIs))
	}
	td, err := spiffeid.TrustDomainFromURI(cert.URIs[0])
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", caCertFile, err)
	}
	return &CA{td: td, cert: cert, key: signer}, nil
}

func (ca *CA) save(dir string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return fmt.Errorf("identity: marshal CA key: %w", err)
	}
	// Key first, certificate last: loadCA treats a missing certificate as "no CA".
	if err := writeFileAtomic(filepath.Join(dir, caKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, caCertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o644)
}

// TrustDomain is the CA's trust domain.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Bundle is the trust bundle that verifies SVIDs this CA issues.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
}

// ComponentID is the SPIFFE ID of one of vwire's own components.
func (ca *CA) ComponentID(component string) (spiffeid.ID, error) {
	return spiffeid.FromSegments(ca.td, "vwire", component)
}

// Issue mints an X.509-SVID for id, valid for ttl (capped by the CA's own
// validity). id must belong to the CA's trust domain.
func (ca *CA) Issue(id spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error) {
	if !id.MemberOf(ca.td) {
		return nil, fmt.Errorf("identity: %s is not in trust domain %s", id, ca.td)
	}
	if id.Path() == "" {
		return nil, fmt.Errorf("identity: %s has no path", id)
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("identity: ttl must be positive, got %s", ttl)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: generate key: %w", err)
	}
	now := time.Now()
	notAfter := now.Add(ttl)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{Organization: []string{"vwire"}},
		URIs:         []*url.URL{id.URL()},
		// A small backdate tolerates clock skew between hosts.
		NotBefore:             now.Add(-30 * time.Second),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("identity: sign SVID for %s: %w", id, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("identity: parse SVID: %w", err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}, nil
}

// WriteSVID writes an SVID and the CA bundle into dir as svid.pem, svid-key.pem
// and bundle.pem: the layout `vwire identity issue` produces and LoadFiles reads.
func (ca *CA) WriteSVID(svid *x509svid.SVID, dir string) error {
	certs, key, err := svid.Marshal()
	if err != nil {
		return fmt.Errorf("identity: marshal SVID: %w", err)
	}
	bundle, err := ca.Bundle().Marshal()
	if err != nil {
		return fmt.Errorf("identity: marshal bundle: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("identity: create %s: %w", dir, err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{SVIDKeyFile, key, 0o600},
		{SVIDCertFile, certs, 0o644},
		{BundleFile, bundle, 0o644},
	} {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// File names written by WriteSVID.
const (
	SVIDCertFile = "svid.pem"
	SVIDKeyFile  = "svid-key.pem"
	BundleFile   = "bundle.pem"
)

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("identity: chmod %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	return nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand does not fail on Linux; a fixed serial would still be a valid cert.
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}
