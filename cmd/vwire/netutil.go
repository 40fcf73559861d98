package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// defaultRouteIP is the IPv4 address of the interface that holds the
// default route: where other nodes reach this one unless told otherwise.
func defaultRouteIP() (net.IP, error) {
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return nil, fmt.Errorf("read routes: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != "00000000" {
			continue
		}
		ifi, err := net.InterfaceByName(f[0])
		if err != nil {
			return nil, err
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP, nil
			}
		}
	}
	return nil, errors.New("this host has no default route with an IPv4 address")
}
