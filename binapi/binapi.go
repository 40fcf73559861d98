// Package binapi pins the VPP binary API that vwire is written against: the
// VPP release of govpp's bundled bindings (go.fd.io/govpp/binapi, VPP
// 25.10), the list of every message vwire sends or receives, and Check, which
// compares that list with the message table of a running VPP when vwire
// connects to it. A VPP whose API differs (another release, or a plugin that
// is not loaded) is refused with one error naming its version and every
// message that differs, instead of failing later, half way through building
// a vWire. There is one copy of the bindings: vwire supports one VPP release
// at a time.
package binapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/af_packet"
	"go.fd.io/govpp/binapi/gso"
	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/ip"
	"go.fd.io/govpp/binapi/ipip"
	"go.fd.io/govpp/binapi/ipsec"
	"go.fd.io/govpp/binapi/l2"
	"go.fd.io/govpp/binapi/l3xc"
	"go.fd.io/govpp/binapi/memclnt"
	"go.fd.io/govpp/binapi/memif"
	"go.fd.io/govpp/binapi/tapv2"
	"go.fd.io/govpp/binapi/vpe"
	"go.fd.io/govpp/binapi/vxlan"
	"go.fd.io/govpp/binapi/wireguard"
)

// VPPRelease is the VPP release whose API the bundled bindings describe.
const VPPRelease = "25.10-release"

// ErrIncompatible is wrapped by the error Check returns for a VPP whose API
// differs from VPPRelease's in a message vwire uses.
var ErrIncompatible = errors.New("VPP binary API differs from the one vwire is built for")

// Messages returns every message vwire uses, requests with their replies
// (and details for dumps), in a fixed order. The forwarder's VPP code must
// use no other message; a test keeps the two in step.
func Messages() []api.Message {
	return []api.Message{
		// connection and version
		&memclnt.ControlPing{}, &memclnt.ControlPingReply{},
		&vpe.ShowVersion{}, &vpe.ShowVersionReply{},
		// interfaces
		&interfaces.SwInterfaceDump{}, &interfaces.SwInterfaceDetails{},
		&interfaces.SwInterfaceSetFlags{}, &interfaces.SwInterfaceSetFlagsReply{},
		&interfaces.SwInterfaceTagAddDel{}, &interfaces.SwInterfaceTagAddDelReply{},
		&interfaces.SwInterfaceSetMtu{}, &interfaces.SwInterfaceSetMtuReply{},
		&interfaces.SwInterfaceAddDelAddress{}, &interfaces.SwInterfaceAddDelAddressReply{},
		&interfaces.SwInterfaceSetTable{}, &interfaces.SwInterfaceSetTableReply{},
		&interfaces.SwInterfaceSetUnnumbered{}, &interfaces.SwInterfaceSetUnnumberedReply{},
		&interfaces.SwInterfaceSetRxMode{}, &interfaces.SwInterfaceSetRxModeReply{},
		&interfaces.CreateVlanSubif{}, &interfaces.CreateVlanSubifReply{},
		&interfaces.DeleteSubif{}, &interfaces.DeleteSubifReply{},
		// ip tables and routes
		&ip.IPTableAddDel{}, &ip.IPTableAddDelReply{},
		&ip.IPTableDump{}, &ip.IPTableDetails{},
		&ip.IPRouteAddDel{}, &ip.IPRouteAddDelReply{},
		&ip.IPRouteDump{}, &ip.IPRouteDetails{},
		// memif
		&memif.MemifSocketFilenameAddDelV2{}, &memif.MemifSocketFilenameAddDelV2Reply{},
		&memif.MemifSocketFilenameDump{}, &memif.MemifSocketFilenameDetails{},
		&memif.MemifCreateV2{}, &memif.MemifCreateV2Reply{},
		&memif.MemifDelete{}, &memif.MemifDeleteReply{},
		&memif.MemifDump{}, &memif.MemifDetails{},
		// af_packet
		&af_packet.AfPacketCreateV3{}, &af_packet.AfPacketCreateV3Reply{},
		&af_packet.AfPacketDelete{}, &af_packet.AfPacketDeleteReply{},
		&af_packet.AfPacketDump{}, &af_packet.AfPacketDetails{},
		// tap
		&tapv2.TapCreateV3{}, &tapv2.TapCreateV3Reply{},
		&tapv2.TapDeleteV2{}, &tapv2.TapDeleteV2Reply{},
		&tapv2.SwInterfaceTapV2Dump{}, &tapv2.SwInterfaceTapV2Details{},
		// vxlan
		&vxlan.VxlanAddDelTunnelV3{}, &vxlan.VxlanAddDelTunnelV3Reply{},
		&vxlan.VxlanTunnelV2Dump{}, &vxlan.VxlanTunnelV2Details{},
		&gso.FeatureGsoEnableDisable{}, &gso.FeatureGsoEnableDisableReply{},
		// wireguard
		&wireguard.WireguardInterfaceCreate{}, &wireguard.WireguardInterfaceCreateReply{},
		&wireguard.WireguardInterfaceDelete{}, &wireguard.WireguardInterfaceDeleteReply{},
		&wireguard.WireguardInterfaceDump{}, &wireguard.WireguardInterfaceDetails{},
		&wireguard.WireguardPeerAdd{}, &wireguard.WireguardPeerAddReply{},
		&wireguard.WireguardPeerRemove{}, &wireguard.WireguardPeerRemoveReply{},
		&wireguard.WireguardPeersDump{}, &wireguard.WireguardPeersDetails{},
		// ipsec over ipip
		&ipip.IpipAddTunnel{}, &ipip.IpipAddTunnelReply{},
		&ipip.IpipDelTunnel{}, &ipip.IpipDelTunnelReply{},
		&ipip.IpipTunnelDump{}, &ipip.IpipTunnelDetails{},
		&ipsec.IpsecSadEntryAddV2{}, &ipsec.IpsecSadEntryAddV2Reply{},
		&ipsec.IpsecSadEntryDel{}, &ipsec.IpsecSadEntryDelReply{},
		&ipsec.IpsecTunnelProtectUpdate{}, &ipsec.IpsecTunnelProtectUpdateReply{},
		&ipsec.IpsecTunnelProtectDel{}, &ipsec.IpsecTunnelProtectDelReply{},
		&ipsec.IpsecTunnelProtectDump{}, &ipsec.IpsecTunnelProtectDetails{},
		// cross-connects
		&l2.SwInterfaceSetL2Xconnect{}, &l2.SwInterfaceSetL2XconnectReply{},
		&l2.L2XconnectDump{}, &l2.L2XconnectDetails{},
		&l2.L2InterfaceVlanTagRewrite{}, &l2.L2InterfaceVlanTagRewriteReply{},
		&l3xc.L3xcUpdate{}, &l3xc.L3xcUpdateReply{},
		&l3xc.L3xcDel{}, &l3xc.L3xcDelReply{},
		&l3xc.L3xcDump{}, &l3xc.L3xcDetails{},
	}
}

// MessageID names a message as VPP's message table does: name_crc.
func MessageID(m api.Message) string { return m.GetMessageName() + "_" + m.GetCrcString() }

// Conn is what Check needs of a govpp connection (*core.Connection has it).
type Conn interface {
	api.Connection
	NewAPIChannel() (api.Channel, error)
}

// IncompatibleError reports a VPP whose API differs from VPPRelease's. It
// wraps ErrIncompatible.
type IncompatibleError struct {
	// Found is the version the running VPP reports ("" if even
	// show_version differs).
	Found string
	// Messages are the messages (name_crc) the running VPP does not know:
	// changed in its release, or of a plugin it has not loaded.
	Messages []string
}

func (e *IncompatibleError) Error() string {
	found := e.Found
	if found == "" {
		found = "of unknown version"
	}
	return fmt.Sprintf("%v: VPP %s is running, vwire is built for VPP %s; %d of %d messages vwire uses differ (changed in that release, or their plugin is not loaded): %s",
		ErrIncompatible, found, VPPRelease, len(e.Messages), len(Messages()), strings.Join(e.Messages, ", "))
}

// Unwrap returns ErrIncompatible.
func (e *IncompatibleError) Unwrap() error { return ErrIncompatible }

// Check compares Messages with the running VPP's message table and returns
// the VPP's version. It fails with an *IncompatibleError when any message
// differs.
func Check(ctx context.Context, conn Conn) (version string, err error) {
	ch, err := conn.NewAPIChannel()
	if err != nil {
		return "", fmt.Errorf("binapi: open channel: %w", err)
	}
	defer ch.Close()
	checkErr := ch.CheckCompatiblity(Messages()...)
	var compat *api.CompatibilityError
	if checkErr != nil && !errors.As(checkErr, &compat) {
		return "", fmt.Errorf("binapi: check messages: %w", checkErr)
	}
	version = ""
	if compat == nil || !slices.Contains(compat.IncompatibleMessages, MessageID(&vpe.ShowVersion{})) {
		reply, err := vpe.NewServiceClient(conn).ShowVersion(ctx, &vpe.ShowVersion{})
		if err != nil {
			return "", fmt.Errorf("binapi: show_version: %w", err)
		}
		version = reply.Version
	}
	if compat != nil {
		msgs := slices.Clone(compat.IncompatibleMessages)
		slices.Sort(msgs)
		return version, &IncompatibleError{Found: version, Messages: msgs}
	}
	return version, nil
}
