package manager_test

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/policy"
	"github.com/vwire/vwire/internal/token"
	"github.com/vwire/vwire/test/sandbox"
)

// TestRequestAuthentication: every hop checks who calls it and the path
// tokens it is given; nothing reaches a dataplane when that fails.
func TestRequestAuthentication(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 1})
	n := sb.Nodes[0]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	n.ServeICMPResponder("icmp-1", nil, "icmp")
	ctx := ctxT(t)

	foreignCA, err := identity.OpenCA(t.TempDir(), "evil.org", true)
	if err != nil {
		t.Fatal(err)
	}
	fid, _ := foreignCA.ComponentID("nsc")
	foreign, err := identity.NewCASource(foreignCA, fid, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	cli := n.Client("nsc")
	tests := []struct {
		name string
		call func() error
		code codes.Code
		msg  string // in the error, when set
	}{
		{name: "unsigned client segment", code: codes.PermissionDenied, call: func() error {
			c := n.Client("nsc-unsigned")
			c.NoToken = true
			_, err := c.Request(ctx, request("icmp", nil))
			return err
		}},
		{name: "expired client token", code: codes.PermissionDenied, call: func() error {
			req := request("icmp", nil)
			req.Connection.Path.PathSegments[0].Expires = timestamppb.New(time.Now().Add(-time.Second))
			_, err := cli.Request(ctx, req)
			return err
		}},
		{name: "tampered client token", code: codes.PermissionDenied, call: func() error {
			c := n.Client("nsc-tamper")
			c.NoToken = true
			svid, _ := c.Src.GetX509SVID()
			tok, _ := token.Sign(svid, spiffeid.RequireFromString("spiffe://sandbox.local/vwire/manager-node1"), time.Now().Add(time.Minute))
			parts := strings.Split(tok, ".")
			parts[1] = parts[1][:len(parts[1])-2] + "AA" // change the claims, keep the signature
			req := request("icmp", nil)
			req.Connection.Path.PathSegments[0].Token = strings.Join(parts, ".")
			_, err := c.Request(ctx, req)
			return err
		}},
		{name: "client token addressed to someone else", code: codes.PermissionDenied, call: func() error {
			c := n.Client("nsc-misaddressed")
			c.NoToken = true
			svid, _ := c.Src.GetX509SVID()
			tok, _ := token.Sign(svid, spiffeid.RequireFromString("spiffe://sandbox.local/vwire/forwarder-node1"), time.Now().Add(time.Minute))
			req := request("icmp", nil)
			req.Connection.Path.PathSegments[0].Token = tok
			_, err := c.Request(ctx, req)
			return err
		}},
		{name: "token signed by another workload", code: codes.PermissionDenied, call: func() error {
			other := n.Client("nsc-other")
			svid, _ := other.Src.GetX509SVID()
			tok, _ := token.Sign(svid, spiffeid.RequireFromString("spiffe://sandbox.local/vwire/manager-node1"), time.Now().Add(time.Minute))
			c := n.Client("nsc-thief")
			c.NoToken = true
			req := request("icmp", nil)
			req.Connection.Path.PathSegments[0].Token = tok
			_, err := c.Request(ctx, req)
			return err
		}},
		{name: "client token not a JWT", code: codes.PermissionDenied, msg: "invalid number of segments", call: func() error {
			c := n.Client("nsc-garbled")
			c.NoToken = true
			req := request("icmp", nil)
			req.Connection.Path.PathSegments[0].Token = "not-a-jwt"
			_, err := c.Request(ctx, req)
			return err
		}},
		{name: "unsigned client token (alg none)", code: codes.PermissionDenied, msg: "signing method none is invalid", call: func() error {
			c := n.Client("nsc-alg-none")
			c.NoToken = true
			tok, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.RegisteredClaims{
				Subject:   "spiffe://sandbox.local/nsc-alg-none",
				Audience:  jwt.ClaimStrings{"spiffe://sandbox.local/vwire/manager-node1"},
				ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute)),
			}).SignedString(jwt.UnsafeAllowNoneSignatureType)
			if err != nil {
				return err
			}
			req := request("icmp", nil)
			req.Connection.Path.PathSegments[0].Token = tok
			_, err = c.Request(ctx, req)
			return err
		}},
		{name: "no client certificate", code: codes.Unavailable, call: func() error {
			cc, err := grpc.NewClient("unix://"+n.ManagerSocket, grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.TLSClientConfig(cli.Src, tlsconfig.AuthorizeAny()))))
			if err != nil {
				return err
			}
			defer cc.Close()
			_, err = networkservice.NewNetworkServiceClient(cc).Request(ctx, request("icmp", nil))
			return err
		}},
		{name: "certificate from another trust domain", code: codes.Unavailable, call: func() error {
			cc, err := grpcutil.Dial("unix://"+n.ManagerSocket, foreign, tlsconfig.AuthorizeAny())
			if err != nil {
				return err
			}
			defer cc.Close()
			_, err = networkservice.NewNetworkServiceClient(cc).Request(ctx, request("icmp", nil))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Fatalf("err = %v, want %s mentioning %q", err, tt.code, tt.msg)
			}
			if len(n.Dataplane.Calls("Connect")) != 0 || len(n.Manager.Connections()) != 0 {
				t.Fatal("a refused request reached the dataplane or left state")
			}
		})
	}

	// The path a client gets back carries a token on every segment.
	conn, err := cli.Request(ctx, request("icmp", nil))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range conn.GetPath().GetPathSegments() {
		if s.GetToken() == "" || s.GetExpires() == nil {
			t.Fatalf("segment %d (%s) has no token or expiry", i, s.GetName())
		}
	}
	// Only the client that made a connection may close it.
	if _, err := n.Client("intruder").Close(ctx, conn); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("close by another workload: %v", err)
	}
	if len(n.Dataplane.Live()) != 1 {
		t.Fatal("an intruder's close tore the vWire down")
	}
	if _, err := cli.Close(ctx, conn); err != nil {
		t.Fatal(err)
	}
}

func TestPolicy(t *testing.T) {
	pol, err := policy.Parse("test", []byte(`
request:
  - name: guests-not-secret
    ids: ["spiffe://sandbox.local/vwire/guest"]
    services: ["secret"]
    deny: true
  - name: everyone
    ids: ["spiffe://sandbox.local/**"]
    services: ["*"]
register:
  - name: infrastructure
    ids: ["spiffe://sandbox.local/vwire/forwarder-*", "spiffe://sandbox.local/vwire/nse-icmp-*"]
    services: ["*"]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opt  sandbox.Options
	}{
		{name: "enforced by the manager", opt: sandbox.Options{Nodes: 1, Policy: pol, Metrics: prometheus.NewRegistry()}},
		{name: "enforced by the registry through the path", opt: sandbox.Options{Nodes: 1, RegistryPolicy: pol}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := sandbox.New(t, tc.opt)
			n := sb.Nodes[0]
			sb.RegisterService(&regapi.NetworkService{Name: "secret"})
			n.ServeICMPResponder("icmp-1", nil, "secret")
			ctx := ctxT(t)

			// Registration: a workload no rule names is refused.
			rogue := n.Client("nse-rogue")
			_, err := rogue.Registry.Register(ctx, &regapi.NetworkServiceEndpoint{Name: "rogue", Url: "tcp://127.0.0.1:9", NetworkServiceNames: []string{"secret"}})
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "no register rule") {
				t.Fatalf("rogue registration: %v", err)
			}
			if len(findEndpoints(t, sb, "rogue")) != 0 {
				t.Fatal("a refused registration reached the registry")
			}
			if tc.opt.Policy == nil {
				return // requests are the manager's to check
			}
			_, err = n.Client("guest").Request(ctx, request("secret", nil))
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `"guests-not-secret"`) {
				t.Fatalf("guest request: %v", err)
			}
			if len(n.Dataplane.Calls("Connect")) != 0 {
				t.Fatal("a refused request reached the dataplane")
			}
			if _, err := n.Client("staff").Request(ctx, request("secret", nil)); err != nil {
				t.Fatalf("allowed request: %v", err)
			}
			// Refusals are counted.
			mfs, err := tc.opt.Metrics.(*prometheus.Registry).Gather()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]float64{}
			for _, mf := range mfs {
				if mf.GetName() == "vwire_policy_refusals_total" {
					for _, m := range mf.GetMetric() {
						got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
					}
				}
			}
			if got["request"] != 1 || got["register"] != 1 {
				t.Fatalf("refusal counters %v, want one of each", got)
			}
		})
	}
}

// TestSVIDRotation: SVIDs rotate (at half their lifetime) under live
// connections; every hop keeps accepting the others' path tokens, because a
// hop redials with its new certificate before it signs with its new key.
func TestSVIDRotation(t *testing.T) {
	const ttl = 3 * time.Second
	sb := sandbox.New(t, sandbox.Options{Nodes: 2, SVIDTTL: ttl})
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	sb.Nodes[1].ServeICMPResponder("icmp-remote", nil, "icmp")
	cli := sb.Nodes[0].Client("nsc")
	ctx := ctxT(t)
	conn, err := cli.Request(ctx, request("icmp", nil))
	if err != nil {
		t.Fatal(err)
	}
	first := conn.GetPath().GetPathSegments()[1].GetToken()
	for end := time.Now().Add(2*ttl + time.Second); time.Now().Before(end); {
		time.Sleep(300 * time.Millisecond)
		if conn, err = cli.Request(ctx, refreshOf(conn)); err != nil {
			t.Fatalf("refresh across SVID rotation: %v", err)
		}
	}
	if conn.GetPath().GetPathSegments()[1].GetToken() == first {
		t.Fatal("the manager's token was never renewed")
	}
	// New connections work too.
	if _, err := sb.Nodes[0].Client("nsc-2").Request(ctx, request("icmp", nil)); err != nil {
		t.Fatal(err)
	}
}
