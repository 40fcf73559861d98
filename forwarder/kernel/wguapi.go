package kernel

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// WireGuard's cross-platform configuration protocol ("UAPI"), which
// wireguard-go's devices take and give in process (IpcSet, IpcGet): no
// socket is opened, so keys stay in this process. See
// https://www.wireguard.com/xplatform/#configuration-protocol.

// uapiSet renders cfg as the body of a "set" operation.
func uapiSet(cfg wgtypes.Config) string {
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k + "=" + v + "\n") }
	if cfg.PrivateKey != nil {
		line("private_key", hex.EncodeToString(cfg.PrivateKey[:]))
	}
	if cfg.ListenPort != nil {
		line("listen_port", strconv.Itoa(*cfg.ListenPort))
	}
	if cfg.FirewallMark != nil {
		line("fwmark", strconv.Itoa(*cfg.FirewallMark))
	}
	if cfg.ReplacePeers {
		line("replace_peers", "true")
	}
	for _, p := range cfg.Peers {
		line("public_key", hex.EncodeToString(p.PublicKey[:]))
		if p.Remove {
			line("remove", "true")
			continue
		}
		if p.UpdateOnly {
			line("update_only", "true")
		}
		if p.PresharedKey != nil {
			line("preshared_key", hex.EncodeToString(p.PresharedKey[:]))
		}
		if p.Endpoint != nil {
			line("endpoint", p.Endpoint.String())
		}
		if p.PersistentKeepaliveInterval != nil {
			line("persistent_keepalive_interval", strconv.Itoa(int(p.PersistentKeepaliveInterval.Seconds())))
		}
		if p.ReplaceAllowedIPs {
			line("replace_allowed_ips", "true")
		}
		for _, a := range p.AllowedIPs {
			line("allowed_ip", a.String())
		}
	}
	return b.String()
}

var errUAPI = errors.New("wireguard configuration")

// parseUAPIGet parses the answer to a "get" operation into the device
// name.
func parseUAPIGet(name, s string) (*wgtypes.Device, error) {
	dev := &wgtypes.Device{Name: name, Type: wgtypes.Userspace}
	var peer *wgtypes.Peer
	var hsSec, hsNsec int64
	endPeer := func() {
		if peer != nil {
			if hsSec != 0 || hsNsec != 0 {
				peer.LastHandshakeTime = time.Unix(hsSec, hsNsec)
			}
			dev.Peers = append(dev.Peers, *peer)
		}
		hsSec, hsNsec = 0, 0
	}
	for i, l := range strings.Split(s, "\n") {
		if l == "" {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return nil, fmt.Errorf("%w: line %d %q: want key=value", errUAPI, i+1, l)
		}
		bad := func(err error) error { return fmt.Errorf("%w: line %d %s: %w", errUAPI, i+1, k, err) }
		if peer == nil && k != "public_key" {
			switch k {
			case "private_key":
				key, err := uapiKey(v)
				if err != nil {
					return nil, bad(err)
				}
				dev.PrivateKey, dev.PublicKey = key, key.PublicKey()
			case "listen_port":
				n, err := strconv.ParseUint(v, 10, 16)
				if err != nil {
					return nil, bad(err)
				}
				dev.ListenPort = int(n)
			case "fwmark":
				n, err := strconv.ParseUint(v, 10, 32)
				if err != nil {
					return nil, bad(err)
				}
				dev.FirewallMark = int(n)
			case "errno":
				if v != "0" {
					return nil, fmt.Errorf("%w: errno %s", errUAPI, v)
				}
			default:
				return nil, bad(errors.New("unknown device key"))
			}
			continue
		}
		var err error
		switch k {
		case "public_key":
			endPeer()
			var key wgtypes.Key
			if key, err = uapiKey(v); err == nil {
				peer = &wgtypes.Peer{PublicKey: key}
			}
		case "preshared_key":
			peer.PresharedKey, err = uapiKey(v)
		case "protocol_version":
			peer.ProtocolVersion, err = strconv.Atoi(v)
		case "endpoint":
			var ap netip.AddrPort
			if ap, err = netip.ParseAddrPort(v); err == nil {
				peer.Endpoint = net.UDPAddrFromAddrPort(ap)
			}
		case "last_handshake_time_sec":
			hsSec, err = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			hsNsec, err = strconv.ParseInt(v, 10, 64)
		case "tx_bytes":
			peer.TransmitBytes, err = strconv.ParseInt(v, 10, 64)
		case "rx_bytes":
			peer.ReceiveBytes, err = strconv.ParseInt(v, 10, 64)
		case "persistent_keepalive_interval":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 16)
			peer.PersistentKeepaliveInterval = time.Duration(n) * time.Second
		case "allowed_ip":
			var p netip.Prefix
			if p, err = netip.ParsePrefix(v); err == nil {
				peer.AllowedIPs = append(peer.AllowedIPs, net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
			}
		case "errno":
			if v != "0" {
				err = fmt.Errorf("errno %s", v)
			}
		default:
			err = errors.New("unknown peer key")
		}
		if err != nil {
			return nil, bad(err)
		}
	}
	endPeer()
	return dev, nil
}

func uapiKey(v string) (wgtypes.Key, error) {
	b, err := hex.DecodeString(v)
	if err != nil {
		return wgtypes.Key{}, err
	}
	return wgtypes.NewKey(b)
}
