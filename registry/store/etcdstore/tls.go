package etcdstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// alertWait is how long diagnoseTLS waits for a TLS 1.3 server's alert
// after the handshake.
const alertWait = 500 * time.Millisecond

// TLSFiles names the PEM files for reaching etcd over TLS with a client
// certificate, as etcd's own --cert, --key and --cacert do.
type TLSFiles struct {
	// Cert and Key are the client certificate and its private key; both
	// or neither.
	Cert, Key string
	// CA holds the certificates that may sign etcd's server certificate;
	// the system's roots when empty.
	CA string
}

// Empty reports whether no file is named: etcd is then reached in plain
// HTTP.
func (f TLSFiles) Empty() bool { return f.Cert == "" && f.Key == "" && f.CA == "" }

// LoadTLS reads f into a client TLS configuration; nil for empty f. Each
// error names the file at fault and what is wrong with it.
func LoadTLS(f TLSFiles) (*tls.Config, error) {
	if f.Empty() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case f.Cert != "" && f.Key == "":
		return nil, fmt.Errorf("client certificate %s given without its key", f.Cert)
	case f.Key != "" && f.Cert == "":
		return nil, fmt.Errorf("client key %s given without its certificate", f.Key)
	case f.Cert != "":
		if err := readable(f.Cert, "client certificate"); err != nil {
			return nil, err
		}
		if err := readable(f.Key, "client key"); err != nil {
			return nil, err
		}
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s with key %s: %w", f.Cert, f.Key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", f.CA)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// readable checks that file can be read, so that a missing file is
// reported as such rather than as a bad key pair.
func readable(file, what string) error {
	fh, err := os.Open(file)
	if err != nil {
		var pathErr *os.PathError
		if errors.As(err, &pathErr) {
			return fmt.Errorf("%s %s: %w", what, file, pathErr.Err)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	return fh.Close()
}

// diagnoseTLS makes one TLS connection to endpoint and returns why the
// server or this client refused it, or nil if it seems accepted. With TLS
// 1.3 a server refuses a client certificate only after the handshake, so
// it also waits briefly for the server's alert.
func diagnoseTLS(ctx context.Context, endpoint string, cfg *tls.Config, timeout time.Duration) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil
	}
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(alertWait))
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		var alert tls.AlertError
		if errors.As(err, &alert) || strings.Contains(err.Error(), "remote error") {
			return err
		}
	}
	return nil
}
