// Package dnstest runs a real DNS server (miekg/dns, UDP and TCP) for tests:
// it answers from records the test sets and changes, and counts the
// queries it gets, so a test sees when a resolver asked again.
package dnstest

import (
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Server is an authoritative DNS server for whatever records it holds.
type Server struct {
	// Addr is host:port, the same for UDP and TCP.
	Addr string

	udp, tcp *dns.Server

	mu      sync.Mutex // guards records, queries
	records map[key][]dns.RR
	queries map[key]int
}

type key struct {
	name  string
	qtype uint16
}

// Start serves on a UDP socket and a TCP listener at addr ("127.0.0.1:0"
// picks a port; both use the UDP socket's port). The listeners are made by
// the calling goroutine, so a test that has entered a network namespace
// on a locked thread gets a server inside it.
func Start(addr string) (*Server, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("dnstest: %w", err)
	}
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("dnstest: %w", err)
	}
	s := &Server{Addr: pc.LocalAddr().String(), records: map[key][]dns.RR{}, queries: map[key]int{}}
	s.udp = &dns.Server{PacketConn: pc, Handler: s}
	s.tcp = &dns.Server{Listener: l, Handler: s}
	udpUp, tcpUp := make(chan struct{}), make(chan struct{})
	s.udp.NotifyStartedFunc = func() { close(udpUp) }
	s.tcp.NotifyStartedFunc = func() { close(tcpUp) }
	go s.udp.ActivateAndServe() //nolint:errcheck // ends at Close
	go s.tcp.ActivateAndServe() //nolint:errcheck
	<-udpUp
	<-tcpUp
	return s, nil
}

// Close stops the server.
func (s *Server) Close() {
	s.udp.Shutdown()
	s.tcp.Shutdown()
}

// Set replaces the records of rr's name and type with rrs, each in zone
// file syntax ("_registry._tcp.a.test. 5 IN SRV 0 0 5002 reg.a.test.").
func (s *Server) Set(rrs ...string) error {
	byKey := map[key][]dns.RR{}
	for _, text := range rrs {
		rr, err := dns.NewRR(text)
		if err != nil {
			return fmt.Errorf("dnstest: %q: %w", text, err)
		}
		k := key{strings.ToLower(rr.Header().Name), rr.Header().Rrtype}
		byKey[k] = append(byKey[k], rr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range byKey {
		s.records[k] = v
	}
	return nil
}

// Delete removes every record of name.
func (s *Server) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.records {
		if k.name == strings.ToLower(dns.Fqdn(name)) {
			delete(s.records, k)
		}
	}
}

// Queries is how many questions for name and qtype the server got.
func (s *Server) Queries(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[key{strings.ToLower(dns.Fqdn(name)), qtype}]
}

// ServeDNS answers from the records: the answer, the targets' addresses
// for SRV in the additional section, NXDOMAIN for an unknown name.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	s.mu.Lock()
	for _, q := range req.Question {
		k := key{strings.ToLower(q.Name), q.Qtype}
		s.queries[k]++
		resp.Answer = append(resp.Answer, s.records[k]...)
		for _, rr := range s.records[k] {
			if srv, ok := rr.(*dns.SRV); ok {
				t := strings.ToLower(srv.Target)
				resp.Extra = append(resp.Extra, s.records[key{t, dns.TypeA}]...)
				resp.Extra = append(resp.Extra, s.records[key{t, dns.TypeAAAA}]...)
			}
		}
		if len(resp.Answer) == 0 && !s.knows(k.name) {
			resp.Rcode = dns.RcodeNameError
		}
	}
	s.mu.Unlock()
	_ = w.WriteMsg(resp)
}

func (s *Server) knows(name string) bool {
	for k := range s.records {
		if k.name == name {
			return true
		}
	}
	return false
}
