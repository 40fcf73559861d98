package passthrough

import (
	"fmt"
	"strconv"
	"strings"
)

// Rule is one --deny filter: IPv4 packets of protocol Proto (and, for TCP
// and UDP, to destination port Port; 0 means any port) are dropped in
// both directions.
type Rule struct {
	Proto uint8
	Port  uint16
}

// Protocol numbers the rule syntax knows by name.
var protoNames = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "sctp": 132}

// ParseRule parses proto[:port]: proto is icmp, tcp, udp, sctp or a
// number 0..255; port (1..65535) only with tcp, udp or sctp.
func ParseRule(s string) (Rule, error) {
	name, portStr, hasPort := strings.Cut(strings.ToLower(strings.TrimSpace(s)), ":")
	var r Rule
	if p, ok := protoNames[name]; ok {
		r.Proto = p
	} else {
		n, err := strconv.ParseUint(name, 10, 8)
		if err != nil {
			return Rule{}, fmt.Errorf("deny %q: protocol %q: want icmp, tcp, udp, sctp or 0..255", s, name)
		}
		r.Proto = uint8(n)
	}
	if !hasPort {
		return r, nil
	}
	if !r.hasPorts() {
		return Rule{}, fmt.Errorf("deny %q: protocol %s has no ports", s, name)
	}
	n, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || n == 0 {
		return Rule{}, fmt.Errorf("deny %q: port %q: want 1..65535", s, portStr)
	}
	r.Port = uint16(n)
	return r, nil
}

// ParseRules parses each of ss with ParseRule.
func ParseRules(ss []string) ([]Rule, error) {
	out := make([]Rule, 0, len(ss))
	for _, s := range ss {
		r, err := ParseRule(s)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (r Rule) hasPorts() bool { return r.Proto == 6 || r.Proto == 17 || r.Proto == 132 }

func (r Rule) String() string {
	name := strconv.Itoa(int(r.Proto))
	for n, p := range protoNames {
		if p == r.Proto {
			name = n
		}
	}
	if r.Port == 0 {
		return name
	}
	return fmt.Sprintf("%s:%d", name, r.Port)
}
