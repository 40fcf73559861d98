package forwarder

import (
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
)

func TestSameOfferingSide(t *testing.T) {
	agreed := &networkservice.Mechanism{Type: "WIREGUARD", Parameters: map[string]string{
		"src_ip": "10.0.0.1", "src_port": "51820", "src_public_key": "A", "dst_ip": "10.0.0.2", "dst_public_key": "B"}}
	tests := []struct {
		name   string
		params map[string]string
		want   bool
	}{
		{name: "the agreed mechanism itself", params: agreed.GetParameters(), want: true},
		{name: "a fresh offer of the same side", params: map[string]string{"src_ip": "10.0.0.1", "src_port": "51820", "src_public_key": "A"}, want: true},
		{name: "a new key (the offerer restarted)", params: map[string]string{"src_ip": "10.0.0.1", "src_port": "51820", "src_public_key": "C"}},
		{name: "a new port", params: map[string]string{"src_ip": "10.0.0.1", "src_port": "51821", "src_public_key": "A"}},
		{name: "another address", params: map[string]string{"src_ip": "10.0.0.9"}},
		{name: "the other side's parameters do not count", params: map[string]string{"src_ip": "10.0.0.1", "dst_public_key": "D"}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offer := &networkservice.Mechanism{Type: "WIREGUARD", Parameters: tt.params}
			if got := sameOfferingSide(offer, agreed); got != tt.want {
				t.Fatalf("sameOfferingSide = %v, want %v", got, tt.want)
			}
		})
	}
}
