package x25519

import (
	"encoding/hex"
	"testing"

	"golang.org/x/crypto/curve25519"
)

// TestPublic: RFC 7748's test vector (section 6.1, Alice and Bob), and
// random keys against curve25519.X25519 with the base point.
func TestPublic(t *testing.T) {
	for _, v := range []struct{ priv, pub string }{
		{"77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"},
		{"5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb", "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"},
	} {
		var priv [KeyLen]byte
		b, _ := hex.DecodeString(v.priv)
		copy(priv[:], b)
		pub, err := Public(priv)
		if err != nil || hex.EncodeToString(pub[:]) != v.pub {
			t.Errorf("Public(%s) = %x, %v; want %s", v.priv, pub, err, v.pub)
		}
	}
	for range 50 {
		priv, pub, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		want, err := curve25519.X25519(priv[:], curve25519.Basepoint)
		if err != nil || string(want) != string(pub[:]) {
			t.Fatalf("Generate: public %x, curve25519 says %x (%v)", pub, want, err)
		}
	}
}
