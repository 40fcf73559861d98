// Package supplier is the architecture's topologically aware scale from
// zero: an endpoint, registered with `supplier: true`, that on a Request
// starts a real endpoint for the client's node and fails the Request with
// the status that makes the manager look again (manager.SupplierStarting).
// What it starts exits by itself when idle; the next client starts one again.
package supplier

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vwire/vwire/manager"
	"github.com/vwire/vwire/workload/nse"
)

// Service starts Command (with Args) once per client node.
type Service struct {
	Command string
	Args    []string
	Log     *slog.Logger

	mu      sync.Mutex           // guards running
	running map[string]*exec.Cmd // by node name
	wg      sync.WaitGroup
}

var _ nse.Service = (*Service)(nil)

// Request starts an endpoint for the client's node, unless one is already
// running, and always refuses the connection so that the manager reselects.
func (s *Service) Request(_ context.Context, conn *networkservice.Connection) error {
	labels := conn.GetLabels()
	node := labels[nse.LabelNodeName]
	if node == "" {
		return status.Error(codes.InvalidArgument, "supplier: the request carries no nodeName label")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		s.running = map[string]*exec.Cmd{}
	}
	if _, ok := s.running[node]; !ok {
		cmd := exec.Command(s.Command, s.Args...)
		// The started endpoint registers itself for the client's node, with
		// the labels the client asked for.
		env := append(os.Environ(), "NODE_NAME="+node)
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(labels)) {
			kv = append(kv, k+"="+labels[k])
		}
		env = append(env, "VWIRE_REQUEST_LABELS="+strings.Join(kv, ","))
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			return status.Errorf(codes.Internal, "supplier: start %s: %v", s.Command, err)
		}
		s.running[node] = cmd
		s.log().Info("started an endpoint", "node", node, "pid", cmd.Process.Pid, "command", s.Command)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := cmd.Wait()
			s.log().Info("started endpoint exited", "node", node, "err", err)
			s.mu.Lock()
			if s.running[node] == cmd {
				delete(s.running, node)
			}
			s.mu.Unlock()
		}()
	}
	return status.Errorf(codes.Unavailable, "%s an endpoint for node %s; look again", manager.SupplierStarting, node)
}

// Close has nothing to release: the supplier never accepts a connection.
func (s *Service) Close(context.Context, *networkservice.Connection) error { return nil }

// Stop ends every endpoint it started and waits for them.
func (s *Service) Stop() {
	s.mu.Lock()
	for _, c := range s.running {
		_ = c.Process.Signal(os.Interrupt)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Service) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// String names the supplier in logs.
func (s *Service) String() string { return fmt.Sprintf("supplier(%s)", s.Command) }
