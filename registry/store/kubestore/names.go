package kubestore

import (
	"encoding/base32"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// encodedPrefix starts every object name that stands for a record name
// Kubernetes cannot hold. "--" never appears in a base32 body, and the
// prefix is itself a valid name start, so the result is a valid name.
const encodedPrefix = "x--"

// nameCodec is base32 (RFC 4648 "extended hex" alphabet) in lower case
// without padding: only 0-9 and a-v, all valid in object names.
var nameCodec = base32.HexEncoding.WithPadding(base32.NoPadding)

// ObjectName returns the Kubernetes object name that holds the record
// name. A name that is a valid object name (a DNS-1123 subdomain: lower
// case letters, digits, '-' and '.', at most 253 characters) and does not
// start with "x--" is kept as it is, so that objects applied with kubectl
// keep their names. Any other name (name@domain, upper case, '/', spaces,
// or one that starts with "x--") becomes "x--" and the lower-case base32
// (extended hex alphabet, no padding) of its bytes. It fails for names
// whose encoding is longer than 253 characters (about 155 bytes), and
// for the empty name.
func ObjectName(name string) (string, bool) {
	if name == "" {
		return "", false
	}
	if plainName(name) {
		return name, true
	}
	encoded := encodedPrefix + strings.ToLower(nameCodec.EncodeToString([]byte(name)))
	if len(encoded) > validation.DNS1123SubdomainMaxLength {
		return "", false
	}
	return encoded, true
}

// RecordName is the inverse of ObjectName. An object name that starts
// with "x--" but is not what ObjectName makes of any name holds no record
// (false): the store ignores such objects.
func RecordName(object string) (string, bool) {
	body, ok := strings.CutPrefix(object, encodedPrefix)
	if !ok {
		return object, true
	}
	raw, err := nameCodec.DecodeString(strings.ToUpper(body))
	if err != nil {
		return "", false
	}
	// Only what ObjectName makes: not a plain name, and in its one
	// spelling (base32 may end in bits a decoder ignores).
	if again, ok := ObjectName(string(raw)); !ok || again != object {
		return "", false
	}
	return string(raw), true
}

func plainName(name string) bool {
	return !strings.HasPrefix(name, encodedPrefix) && len(validation.IsDNS1123Subdomain(name)) == 0
}
