package etcdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TLSFiles are PEM files for a client of a server started with StartTLS.
type TLSFiles struct {
	// CA is the certificate that signed the server's and the client's
	// certificates; a client trusts the server through it.
	CA string
	// Cert and Key are a client certificate the server accepts.
	Cert, Key string
	// OtherCert and OtherKey are a client certificate from another CA: the
	// server refuses it.
	OtherCert, OtherKey string
}

// serverTLS are the server side's files.
type serverTLS struct {
	ca, cert, key string
}

// writeTLS makes a CA, a server certificate for 127.0.0.1, a client
// certificate, and a client certificate from an unrelated CA, in dir.
func writeTLS(dir string) (TLSFiles, serverTLS, error) {
	ca, caKey, err := newCA("etcdtest CA")
	if err != nil {
		return TLSFiles{}, serverTLS{}, err
	}
	other, otherKey, err := newCA("etcdtest other CA")
	if err != nil {
		return TLSFiles{}, serverTLS{}, err
	}
	files := TLSFiles{
		CA:        filepath.Join(dir, "ca.pem"),
		Cert:      filepath.Join(dir, "client.pem"),
		Key:       filepath.Join(dir, "client-key.pem"),
		OtherCert: filepath.Join(dir, "other-client.pem"),
		OtherKey:  filepath.Join(dir, "other-client-key.pem"),
	}
	srv := serverTLS{ca: files.CA, cert: filepath.Join(dir, "server.pem"), key: filepath.Join(dir, "server-key.pem")}
	if err := writePEM(files.CA, "CERTIFICATE", ca.Raw); err != nil {
		return TLSFiles{}, serverTLS{}, err
	}
	leaves := []struct {
		cert, key string
		ca        *x509.Certificate
		caKey     *ecdsa.PrivateKey
		server    bool
	}{
		{cert: srv.cert, key: srv.key, ca: ca, caKey: caKey, server: true},
		{cert: files.Cert, key: files.Key, ca: ca, caKey: caKey},
		{cert: files.OtherCert, key: files.OtherKey, ca: other, caKey: otherKey},
	}
	for _, l := range leaves {
		if err := writeLeaf(l.cert, l.key, l.ca, l.caKey, l.server); err != nil {
			return TLSFiles{}, serverTLS{}, err
		}
	}
	return files, srv, nil
}

func newCA(name string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ca key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("ca certificate: %w", err)
	}
	return cert, key, nil
}

func writeLeaf(certFile, keyFile string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, server bool) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("key for %s: %w", certFile, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return fmt.Errorf("serial for %s: %w", certFile, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: filepath.Base(certFile)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		// etcd also dials itself as a client with this pair.
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("certificate %s: %w", certFile, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("key for %s: %w", certFile, err)
	}
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		return err
	}
	return writePEM(keyFile, "EC PRIVATE KEY", keyDER)
}

func writePEM(file, typ string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}
