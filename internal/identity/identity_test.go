package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func mustCA(t *testing.T, td string) *CA {
	t.Helper()
	ca, err := OpenCA(t.TempDir(), td, true)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustSource(t *testing.T, ca *CA, component string, ttl time.Duration) *CASource {
	t.Helper()
	id, err := ca.ComponentID(component)
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewCASource(ca, id, ttl, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func TestOpenCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenCA(dir, "", false); !errors.Is(err, ErrNoCA) {
		t.Fatalf("open missing CA: err = %v, want ErrNoCA", err)
	}
	ca, err := OpenCA(dir, "example.org", true)
	if err != nil {
		t.Fatal(err)
	}
	again, err := OpenCA(dir, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if !again.cert.Equal(ca.cert) || again.TrustDomain().Name() != "example.org" {
		t.Fatalf("reloaded CA differs")
	}
	if _, err := OpenCA(dir, "other.org", true); err == nil || !strings.Contains(err.Error(), `"example.org"`) {
		t.Fatalf("trust domain mismatch: err = %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, caDirName, caKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if _, err := OpenCA(t.TempDir(), "not a domain!", true); err == nil {
		t.Fatal("bad trust domain accepted")
	}
}

func TestOpenCAConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	cas := make(chan *CA, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			ca, err := OpenCA(dir, "", true)
			cas <- ca
			errs <- err
		}()
	}
	var first *CA
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		ca := <-cas
		if first == nil {
			first = ca
		} else if !first.cert.Equal(ca.cert) {
			t.Fatal("concurrent opens created two CAs")
		}
	}
}

func TestIssue(t *testing.T) {
	ca := mustCA(t, "example.org")
	id := spiffeid.RequireFromString("spiffe://example.org/ns/default/sa/client")
	svid, err := ca.Issue(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	gotID, _, err := x509svid.Verify(svid.Certificates, ca.Bundle())
	if err != nil {
		t.Fatalf("SVID does not verify against the bundle: %v", err)
	}
	if gotID != id {
		t.Fatalf("id = %s, want %s", gotID, id)
	}
	for _, tt := range []struct {
		name string
		id   spiffeid.ID
		ttl  time.Duration
	}{
		{name: "other trust domain", id: spiffeid.RequireFromString("spiffe://other.org/x"), ttl: time.Hour},
		{name: "no path", id: spiffeid.RequireFromString("spiffe://example.org"), ttl: time.Hour},
		{name: "zero ttl", id: id, ttl: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ca.Issue(tt.id, tt.ttl); err == nil {
				t.Fatal("issued, want error")
			}
		})
	}
}

func TestWriteSVIDAndFileSource(t *testing.T) {
	ca := mustCA(t, "example.org")
	id := spiffeid.RequireFromString("spiffe://example.org/workload/a")
	dir := t.TempDir()
	svid, _ := ca.Issue(id, time.Hour)
	if err := ca.WriteSVID(svid, dir); err != nil {
		t.Fatal(err)
	}
	src, err := NewFileSource(dir)
	if err != nil {
		t.Fatal(err)
	}
	if src.ID() != id {
		t.Fatalf("id = %s", src.ID())
	}
	// Replace the files: the source serves the new SVID.
	svid2, _ := ca.Issue(id, time.Hour)
	time.Sleep(10 * time.Millisecond) // distinct mtime
	if err := ca.WriteSVID(svid2, dir); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(time.Second)
	for _, f := range []string{SVIDCertFile, SVIDKeyFile, BundleFile} {
		os.Chtimes(filepath.Join(dir, f), now, now)
	}
	got, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if !got.Certificates[0].Equal(svid2.Certificates[0]) {
		t.Fatal("file source did not pick up the replaced SVID")
	}
	if _, err := NewFileSource(t.TempDir()); err == nil {
		t.Fatal("empty directory accepted")
	}
}

// serve starts a gRPC server with the health service on loopback.
func serve(t *testing.T, creds credentials.TransportCredentials) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(creds))
	healthpb.RegisterHealthServer(g, health.NewServer())
	go g.Serve(l)
	t.Cleanup(g.Stop)
	return l.Addr().String()
}

func check(ctx context.Context, addr string, creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		cc.Close()
		return nil, err
	}
	return cc, nil
}

func TestMTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ca := mustCA(t, "example.org")
	server := mustSource(t, ca, "registry", time.Hour)
	client := mustSource(t, ca, "cli", time.Hour)
	addr := serve(t, ServerCredentials(server, AuthorizeTrustDomain(server)))

	cc, err := check(ctx, addr, ClientCredentials(client, AuthorizeTrustDomain(client)))
	if err != nil {
		t.Fatalf("same trust domain refused: %v", err)
	}
	cc.Close()

	foreign := mustSource(t, mustCA(t, "evil.org"), "cli", time.Hour)
	tests := []struct {
		name  string
		creds credentials.TransportCredentials
	}{
		{name: "plaintext", creds: insecure.NewCredentials()},
		{name: "no client certificate", creds: credentials.NewTLS(tlsconfig.TLSClientConfig(client, tlsconfig.AuthorizeAny()))},
		{name: "other trust domain", creds: ClientCredentials(foreign, tlsconfig.AuthorizeAny())},
		{name: "same CA key, but client only trusts a specific server id", creds: ClientCredentials(client, tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://example.org/vwire/manager")))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if cc, err := check(ctx, addr, tt.creds); err == nil {
				cc.Close()
				t.Fatal("connection accepted")
			}
		})
	}
}

func TestExpiredCertificateRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ca := mustCA(t, "example.org")
	server := mustSource(t, ca, "registry", time.Hour)
	addr := serve(t, ServerCredentials(server, AuthorizeTrustDomain(server)))
	// The SVID's backdate is 30 s: a 1 s ttl makes a certificate that
	// expired before it was used.
	svid, err := ca.Issue(spiffeid.RequireFromString("spiffe://example.org/old"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	cfg := tlsconfig.MTLSClientConfig(svid, ca.Bundle(), tlsconfig.AuthorizeAny())
	if cc, err := check(ctx, addr, credentials.NewTLS(cfg)); err == nil {
		cc.Close()
		t.Fatal("expired client certificate accepted")
	}
}

// TestRotation: the source renews its SVID before expiry; new handshakes use
// the new one, and a connection made before rotation keeps working after the
// first certificate has expired.
func TestRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ca := mustCA(t, "example.org")
	const ttl = 2 * time.Second
	server := mustSource(t, ca, "registry", ttl)
	client := mustSource(t, ca, "cli", ttl)
	first, _ := server.GetX509SVID()
	addr := serve(t, ServerCredentials(server, AuthorizeTrustDomain(server)))
	cc, err := check(ctx, addr, ClientCredentials(client, AuthorizeTrustDomain(client)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	// Wait past the first certificate's expiry.
	time.Sleep(time.Until(first.Certificates[0].NotAfter) + 500*time.Millisecond)
	now, _ := server.GetX509SVID()
	if now.Certificates[0].Equal(first.Certificates[0]) {
		t.Fatal("SVID not rotated")
	}
	if time.Now().After(now.Certificates[0].NotAfter) {
		t.Fatal("current SVID is expired")
	}
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("existing connection broke across rotation: %v", err)
	}
	// A fresh handshake sees the new certificate.
	var seen *x509.Certificate
	tlsCfg := ClientTLS(client, AuthorizeTrustDomain(client))
	conn, err := tls.Dial("tcp", addr, tlsCfg)
	if err != nil {
		t.Fatalf("new handshake after rotation: %v", err)
	}
	seen = conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if seen.Equal(first.Certificates[0]) {
		t.Fatal("server still presents the first certificate")
	}
}

func TestWorkloadAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ca := mustCA(t, "example.org")
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	want := spiffeid.RequireFromString("spiffe://example.org/ns/default/sa/nsc")
	g := grpc.NewServer()
	(&WorkloadAPIServer{CA: ca, TTL: time.Hour, Identify: func(context.Context) (spiffeid.ID, error) { return want, nil }}).Register(g)
	go g.Serve(l)
	defer g.Stop()

	t.Setenv(EnvWorkloadAPISocket, "unix://"+sock)
	src, err := New(ctx, Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.ID() != want {
		t.Fatalf("id = %s, want %s", src.ID(), want)
	}
	// Its SVID works against a CA-sourced server of the same trust domain.
	server := mustSource(t, ca, "registry", time.Hour)
	addr := serve(t, ServerCredentials(server, AuthorizeTrustDomain(server)))
	cc, err := check(ctx, addr, ClientCredentials(src, AuthorizeTrustDomain(src)))
	if err != nil {
		t.Fatalf("workload API identity refused: %v", err)
	}
	cc.Close()
}

func TestNewFromStateDir(t *testing.T) {
	ctx := context.Background()
	t.Setenv(EnvWorkloadAPISocket, "")
	dir := t.TempDir()
	if _, err := New(ctx, Config{StateDir: dir, Component: "cli"}); err == nil || !strings.Contains(err.Error(), "--state-dir") {
		t.Fatalf("no CA: err = %v, want a hint about --state-dir", err)
	}
	src, err := New(ctx, Config{StateDir: dir, Component: "registry", CreateCA: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if got := src.ID().String(); got != "spiffe://vwire.local/vwire/registry" {
		t.Fatalf("id = %s", got)
	}
}

// TestWorkloadAPIPeerIdentity: vwire's own Workload API tells workloads
// apart by their socket's peer credentials.
func TestWorkloadAPIPeerIdentity(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ca := mustCA(t, "example.org")
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(PeerCredentials{}))
	(&WorkloadAPIServer{CA: ca, TTL: time.Hour, Identify: IdentifyByPeer(ca.TrustDomain())}).Register(g)
	go g.Serve(l)
	defer g.Stop()

	src, err := NewWorkloadAPISource(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	exe, _ := os.Executable()
	want := fmt.Sprintf("spiffe://example.org/workload/uid/%d/%s", os.Getuid(), filepath.Base(exe))
	if got := src.ID().String(); got != want {
		t.Fatalf("id = %s, want %s", got, want)
	}
}
