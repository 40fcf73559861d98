package spire

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/sys/unix"

	"github.com/vwire/vwire/test/e2e"
)

// SPIRE is a spire-server and a spire-agent (join token, unix workload
// attestor) running in their own network namespace, the server on that
// namespace's loopback. Workloads anywhere on the host reach the agent's
// Workload API through its pathname unix socket, AgentSocket.
type SPIRE struct {
	TD         spiffeid.TrustDomain
	ServerBin  string
	AgentBin   string
	Dir        string // configs, data, sockets
	ServerSock string // admin API
	AgentSock  string // Workload API
	BundleFile string // the server's trust bundle, PEM
	HostID     spiffeid.ID
	Server     *e2e.Proc
	Agent      *e2e.Proc
	Bundle     *x509bundle.Bundle
	NS         *e2e.Netns
}

// spireServerPort is the server's port on the SPIRE namespace's loopback:
// nothing else listens there, so a fixed port is safe.
const spireServerPort = 8081

const serverConf = `server {
    bind_address = "127.0.0.1"
    bind_port = "%d"
    socket_path = %q
    trust_domain = %q
    data_dir = %q
    log_level = "DEBUG"
    default_x509_svid_ttl = %q
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = %q
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
}
`

const agentConf = `agent {
    data_dir = %q
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = "%d"
    socket_path = %q
    trust_bundle_path = %q
    trust_domain = %q
}

plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {
            # unix:path selectors tell vwire's components apart; no hashing.
            discover_workload_path = true
            workload_size_limit = -1
        }
    }
}
`

// StartSPIRE starts a SPIRE server with X.509-SVIDs of svidTTL, bootstraps
// an agent with a join token (its node gets the alias spiffe://<td>/host),
// and returns once the agent's Workload API is healthy.
func StartSPIRE(t *testing.T, lab *e2e.Lab, binDir string, td spiffeid.TrustDomain, svidTTL time.Duration) *SPIRE {
	t.Helper()
	dir := filepath.Join(lab.Dir, "spire")
	for _, d := range []string{"server", "agent"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s := &SPIRE{
		TD:         td,
		ServerBin:  filepath.Join(binDir, "spire-server"),
		AgentBin:   filepath.Join(binDir, "spire-agent"),
		Dir:        dir,
		ServerSock: filepath.Join(dir, "server.sock"),
		AgentSock:  filepath.Join(dir, "agent.sock"),
		BundleFile: filepath.Join(dir, "bundle.pem"),
		HostID:     spiffeid.RequireFromPath(td, "/host"),
		NS:         lab.Netns("spire"),
	}

	conf := filepath.Join(dir, "server.conf")
	writeFile(t, conf, fmt.Sprintf(serverConf, spireServerPort, s.ServerSock, td.Name(),
		filepath.Join(dir, "server"), svidTTL.String(), filepath.Join(dir, "server", "datastore.sqlite3")))
	s.Server = lab.StartProgram(s.NS, "spire-server", s.ServerBin, "run", "-config", conf)
	e2e.Eventually(t, e2e.StartTimeout, "spire-server is healthy", func() error {
		if s.Server.Exited() {
			return e2e.Permanent(fmt.Errorf("spire-server: %w", e2e.ErrExited))
		}
		_, err := s.ServerCmd("healthcheck")
		return err
	})

	bundle, err := s.ServerCmd("bundle", "show", "-format", "pem")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, s.BundleFile, bundle)
	if s.Bundle, err = x509bundle.Load(td, s.BundleFile); err != nil {
		t.Fatalf("SPIRE bundle: %v", err)
	}

	out, err := s.ServerCmd("token", "generate", "-spiffeID", s.HostID.String(), "-ttl", "600")
	if err != nil {
		t.Fatal(err)
	}
	token, ok := strings.CutPrefix(strings.TrimSpace(out), "Token: ")
	if !ok || token == "" {
		t.Fatalf("spire-server token generate: unexpected output %q", out)
	}

	conf = filepath.Join(dir, "agent.conf")
	writeFile(t, conf, fmt.Sprintf(agentConf, filepath.Join(dir, "agent"), spireServerPort, s.AgentSock, s.BundleFile, td.Name()))
	s.Agent = lab.StartProgram(s.NS, "spire-agent", s.AgentBin, "run", "-config", conf, "-joinToken", token)
	e2e.Eventually(t, e2e.StartTimeout, "spire-agent is healthy", func() error {
		if s.Agent.Exited() {
			return e2e.Permanent(fmt.Errorf("spire-agent: %w", e2e.ErrExited))
		}
		return command(10*time.Second, s.AgentBin, "healthcheck", "-socketPath", s.AgentSock).err
	})
	return s
}

// ServerCmd runs `spire-server ARGS -socketPath <admin socket>` and returns
// its stdout.
func (s *SPIRE) ServerCmd(args ...string) (string, error) {
	r := command(30*time.Second, s.ServerBin, append(args, "-socketPath", s.ServerSock)...)
	return r.stdout, r.err
}

// Register creates a workload entry for id, parented by the agent's node,
// matching every one of selectors.
func (s *SPIRE) Register(t *testing.T, id spiffeid.ID, selectors ...string) {
	t.Helper()
	args := []string{"entry", "create", "-parentID", s.HostID.String(), "-spiffeID", id.String()}
	for _, sel := range selectors {
		args = append(args, "-selector", sel)
	}
	if _, err := s.ServerCmd(args...); err != nil {
		t.Fatal(err)
	}
}

// WaitEntriesCached waits until the agent has fetched the entries for ids
// and minted their SVIDs, so workloads started next get one at once.
func (s *SPIRE) WaitEntriesCached(t *testing.T, ids ...spiffeid.ID) {
	t.Helper()
	e2e.Eventually(t, e2e.StartTimeout, "the SPIRE agent has the vwire entries", func() error {
		var missing []string
		log := s.Agent.Output() + s.Agent.Log() // SPIRE logs to stdout
		for _, id := range ids {
			if !strings.Contains(log, id.String()) {
				missing = append(missing, id.String())
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("the agent's log does not mention %s", strings.Join(missing, ", "))
		}
		return nil
	})
}

type result struct {
	stdout string
	err    error
}

// command runs a short command in the test's own namespace.
func command(timeout time.Duration, prog string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return result{stdout.String(), fmt.Errorf("%s %s: %v: %s%s", filepath.Base(prog), strings.Join(args, " "),
			err, stdout.String(), stderr.String())}
	}
	return result{stdout: stdout.String()}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// ServerSVID is what a TLS server presented.
type ServerSVID struct {
	ID        spiffeid.ID
	Serial    string
	NotBefore time.Time
	NotAfter  time.Time
}

func (s ServerSVID) String() string {
	return fmt.Sprintf("%s (serial %s, valid %s..%s)", s.ID, s.Serial,
		s.NotBefore.Format(time.TimeOnly), s.NotAfter.Format(time.TimeOnly))
}

// ProbeServer opens a TLS connection to a vwire server (network "unix" or
// "tcp") and returns the X.509-SVID it presents, verified against bundle.
// The probe has no certificate of its own: the server refuses it once the
// handshake is over, after its certificate has been seen.
func ProbeServer(network, addr string, bundle *x509bundle.Bundle) (ServerSVID, error) {
	var got *ServerSVID
	var verr error
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		// The chain is verified below, as SPIFFE verifies it: against the
		// trust domain's bundle, by URI SAN, not by host name.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, chains, err := x509svid.ParseAndVerify(raw, bundle)
			if err != nil {
				verr = err
				return err
			}
			leaf := chains[0][0]
			got = &ServerSVID{ID: id, Serial: leaf.SerialNumber.Text(16), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}
			return nil
		},
	}
	conn, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return ServerSVID{}, err
	}
	defer conn.Close()
	tc := tls.Client(conn, cfg)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	herr := tc.Handshake()
	switch {
	case got != nil:
		return *got, nil
	case verr != nil:
		return ServerSVID{}, fmt.Errorf("%s %s presents an SVID that does not verify against the SPIRE bundle: %w", network, addr, verr)
	default:
		return ServerSVID{}, fmt.Errorf("%s %s: no certificate: %v", network, addr, herr)
	}
}

// ProbeServerIn is ProbeServer from inside the named network namespace
// (`ip netns` name), for a server on that namespace's loopback.
func ProbeServerIn(nsName, network, addr string, bundle *x509bundle.Bundle) (ServerSVID, error) {
	type res struct {
		svid ServerSVID
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		// The thread goes into the namespace and back. It must not end
		// while switched, nor at all: the processes the test started carry
		// Pdeathsig, which fires when the thread that forked them exits,
		// and a locked thread exits with its goroutine.
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{err: err}
			return
		}
		defer self.Close()
		target, err := os.Open(filepath.Join("/run/netns", nsName))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- res{err: fmt.Errorf("setns %s: %w", nsName, err)}
			return
		}
		svid, perr := ProbeServer(network, addr, bundle)
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{err: fmt.Errorf("back from %s: setns: %w", nsName, err)}
			select {} // keep the thread, in the wrong namespace, out of use
		}
		runtime.UnlockOSThread()
		ch <- res{svid, perr}
	}()
	r := <-ch
	return r.svid, r.err
}
