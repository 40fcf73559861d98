package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// exampleDomain matches the registry domain of a service name in the
// examples (name@finance.example.com): the test registry is authoritative
// for no domain, so the examples are applied with plain names.
var exampleDomain = regexp.MustCompile(`@[a-z0-9.-]+\.example\.com`)

// ExampleYAML reads deployments/examples/<name>/<name>.yaml with the
// registry domains of its service names removed.
func ExampleYAML(l *Lab, name string) string {
	l.T.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deployments", "examples", name, name+".yaml"))
	if err != nil {
		l.T.Fatal(err)
	}
	return exampleDomain.ReplaceAllString(string(b), "")
}

// Apply runs `vwire apply` of yaml against the mesh's registry, from node1,
// and waits for it to succeed.
func (m *Mesh) Apply(yaml string) {
	l := m.Lab
	l.T.Helper()
	f, err := os.CreateTemp(l.Dir, "apply-*.yaml")
	if err != nil {
		l.T.Fatal(err)
	}
	if _, err := f.WriteString(yaml); err != nil {
		l.T.Fatal(err)
	}
	f.Close()
	p := l.Start(m.Nodes[0].Netns, "apply", m.common("apply", "-f", f.Name(), "--registry", m.Registry)...)
	err, ok := p.Wait(StartTimeout)
	if !ok || err != nil {
		l.T.Fatalf("vwire apply: ended %v, %v: %s", ok, err, p.Log())
	}
}

// PassthroughOptions describe a `vwire nse passthrough`.
type PassthroughOptions struct {
	Name      string   // --name, required
	Service   string   // --service, required
	Advertise string   // --advertise-labels k=v,...
	Labels    string   // --labels of the onward request
	Deny      []string // --deny rules
	Args      []string
}

// StartPassthrough starts a passthrough in ws, registered through n's
// manager, and waits until the manager has registered it.
func (n *MeshNode) StartPassthrough(ws *Netns, o PassthroughOptions) *Proc {
	m := n.mesh
	m.Lab.T.Helper()
	args := []string{
		"--name", o.Name,
		"--service", o.Service,
		"--connect-to", n.ConnectTo(),
		"--listen", "unix://" + filepath.Join(m.Lab.Dir, o.Name+".sock"),
		"--stats-interval", "200ms",
	}
	if o.Advertise != "" {
		args = append(args, "--advertise-labels", o.Advertise)
	}
	if o.Labels != "" {
		args = append(args, "--labels", o.Labels)
	}
	for _, d := range o.Deny {
		args = append(args, "--deny", d)
	}
	args = append(args, o.Args...)
	p := m.Lab.Start(ws, o.Name, m.common("nse passthrough", args...)...)
	n.Manager.WaitLogLine(StartTimeout, "endpoint registered", "name="+o.Name)
	return p
}

// PassthroughCounters are the totals a passthrough logged last.
type PassthroughCounters struct{ Passed, Dropped uint64 }

// Counters parses the last "passthrough counters" line of p's log (zero
// when there is none yet).
func Counters(p *Proc) (PassthroughCounters, error) {
	var c PassthroughCounters
	lines := strings.Split(p.Log(), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.Contains(lines[i], "passthrough counters") {
			continue
		}
		for _, f := range strings.Fields(lines[i]) {
			k, v, _ := strings.Cut(f, "=")
			var dst *uint64
			switch k {
			case "total_passed":
				dst = &c.Passed
			case "total_dropped":
				dst = &c.Dropped
			default:
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return c, fmt.Errorf("%s: counters line %q: %w", p, lines[i], err)
			}
			*dst = n
		}
		return c, nil
	}
	return c, nil
}

// WaitCounters waits until p's logged counters satisfy ok.
func WaitCounters(p *Proc, timeout time.Duration, what string, ok func(PassthroughCounters) bool) PassthroughCounters {
	p.lab.T.Helper()
	var c PassthroughCounters
	Eventually(p.lab.T, timeout, fmt.Sprintf("%s counters: %s", p, what), func() error {
		var err error
		if c, err = Counters(p); err != nil {
			return Permanent(err)
		}
		if ok(c) {
			return nil
		}
		return fmt.Errorf("counters %+v", c)
	})
	return c
}
