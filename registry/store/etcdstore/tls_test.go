package etcdstore

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vwire/vwire/registry/store"
	"github.com/vwire/vwire/registry/store/etcdstore/etcdtest"
)

// TestClientCertificateTLS runs etcd that asks every client for a
// certificate signed by its CA: only the client with one gets in.
func TestClientCertificateTLS(t *testing.T) {
	srv := etcdtest.StartTLS(t)
	files := srv.TLS()
	endpoints := srv.Endpoints()
	if !strings.HasPrefix(endpoints[0], "https://") {
		t.Fatalf("TLS server endpoint %s, want https", endpoints[0])
	}
	refused := []struct {
		name  string
		files TLSFiles
		why   string // what the error must say
	}{
		{name: "no client certificate", files: TLSFiles{CA: files.CA}, why: "certificate required"},
		{name: "certificate from another CA", files: TLSFiles{Cert: files.OtherCert, Key: files.OtherKey, CA: files.CA}, why: "remote error: tls"},
		{name: "server not trusted", files: TLSFiles{Cert: files.Cert, Key: files.Key}, why: "certificate signed by unknown authority"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadTLS(tt.files)
			if err != nil {
				t.Fatalf("LoadTLS: %v", err)
			}
			s, err := New(t.Context(), Config{Endpoints: endpoints, TLS: cfg, DialTimeout: 2 * time.Second})
			if err == nil {
				s.Close()
				t.Fatalf("New succeeded, want etcd to refuse the client")
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("New error %q, want it to say %q", err, tt.why)
			}
		})
	}
	t.Run("plain http to the TLS port", func(t *testing.T) {
		plain := "http://" + strings.TrimPrefix(endpoints[0], "https://")
		s, err := New(t.Context(), Config{Endpoints: []string{plain}, DialTimeout: 2 * time.Second})
		if err == nil {
			s.Close()
			t.Fatalf("New succeeded in plain HTTP")
		}
	})
	t.Run("client certificate", func(t *testing.T) {
		cfg, err := LoadTLS(TLSFiles{Cert: files.Cert, Key: files.Key, CA: files.CA})
		if err != nil {
			t.Fatalf("LoadTLS: %v", err)
		}
		s, err := New(t.Context(), Config{Endpoints: endpoints, TLS: cfg, Prefix: "/tls/"})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer s.Close()
		_, w := mustListAndWatch(t, s, store.KindEndpoint)
		if err := s.Put(t.Context(), store.KindEndpoint, "nse-1", []byte("v"), ttl, "ns"); err != nil {
			t.Fatalf("Put over TLS: %v", err)
		}
		if got, err := s.Get(t.Context(), store.KindEndpoint, "nse-1"); err != nil || string(got) != "v" {
			t.Fatalf("Get over TLS = %q, %v; want v", got, err)
		}
		select {
		case ev := <-w.Events:
			if ev.Name != "nse-1" || ev.Deleted {
				t.Fatalf("watch event %+v, want the put of nse-1", ev)
			}
		case <-time.After(patience):
			t.Fatalf("no watch event over TLS")
		}
		// Expiry goes through etcd's leases, over the same connection.
		select {
		case ev := <-w.Events:
			if ev.Name != "nse-1" || !ev.Deleted {
				t.Fatalf("watch event %+v, want nse-1 expired", ev)
			}
		case <-time.After(patience):
			t.Fatalf("nse-1 did not expire over TLS")
		}
	})
}

func TestSchemesMustMatchTLS(t *testing.T) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	tests := []struct {
		name      string
		endpoints []string
		withTLS   bool
		want      string
	}{
		{name: "http with TLS files", endpoints: []string{"http://127.0.0.1:2379"}, withTLS: true, want: "must be https://127.0.0.1:2379"},
		{name: "mixed schemes", endpoints: []string{"https://a:2379", "http://b:2379"}, want: "all endpoints must be http or all https"},
		{name: "no scheme", endpoints: []string{"127.0.0.1:2379"}, want: "want http://host:port"},
		{name: "other scheme", endpoints: []string{"unix:///run/etcd.sock"}, want: "want http://host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Endpoints: tt.endpoints, DialTimeout: time.Second}
			if tt.withTLS {
				c.TLS = cfg
			}
			s, err := New(t.Context(), c)
			if err == nil {
				s.Close()
				t.Fatalf("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error %q, want it to say %q", err, tt.want)
			}
		})
	}
}

func TestLoadTLSErrors(t *testing.T) {
	srv := etcdtest.StartTLS(t)
	files := srv.TLS()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	garbage := writeFile(t, "garbage.pem", "not a certificate\n")
	tests := []struct {
		name  string
		files TLSFiles
		want  string
	}{
		{name: "certificate without key", files: TLSFiles{Cert: files.Cert}, want: "given without its key"},
		{name: "key without certificate", files: TLSFiles{Key: files.Key}, want: "given without its certificate"},
		{name: "missing certificate", files: TLSFiles{Cert: missing, Key: files.Key}, want: "client certificate " + missing + ": no such file"},
		{name: "missing key", files: TLSFiles{Cert: files.Cert, Key: missing}, want: "client key " + missing + ": no such file"},
		{name: "garbage certificate", files: TLSFiles{Cert: garbage, Key: files.Key}, want: "client certificate " + garbage + " with key"},
		{name: "key of another certificate", files: TLSFiles{Cert: files.Cert, Key: files.OtherKey}, want: "private key does not match public key"},
		{name: "missing CA", files: TLSFiles{CA: missing}, want: "CA file: open " + missing},
		{name: "CA without certificates", files: TLSFiles{CA: garbage}, want: "CA file " + garbage + ": no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadTLS(tt.files)
			if err == nil {
				t.Fatalf("LoadTLS succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadTLS error %q, want it to say %q", err, tt.want)
			}
		})
	}
	if cfg, err := LoadTLS(TLSFiles{}); cfg != nil || err != nil {
		t.Fatalf("LoadTLS of no files = %v, %v; want nil, nil", cfg, err)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
