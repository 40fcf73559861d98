package manifest

import (
	"errors"
	"strings"
	"testing"
)

// FuzzDecode checks that Decode never panics, that its errors are one-line
// *Error values with nothing returned beside them, and that whatever decodes
// encodes (as YAML and as JSON) to input that decodes to equal objects.
func FuzzDecode(f *testing.F) {
	seed := readSeed(f)
	f.Add(seed)
	for _, doc := range seedDocuments(f) {
		f.Add([]byte(doc))
	}
	for _, o := range append(sampleObjects(), awkwardObjects()...) {
		for _, format := range []string{"yaml", "json"} {
			data, err := Encode([]Object{o}, format)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	all, err := Encode(sampleObjects(), "json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(all)
	f.Add([]byte(jsonService("a") + jsonService("b")))
	f.Add([]byte("---\r\n# c\r\n---\r\n" + simpleService))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode("fuzz", data)
		if err != nil {
			if objs != nil {
				t.Fatalf("%d objects returned with error %v", len(objs), err)
			}
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("error %v (%T) is not a *manifest.Error", err, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			if me.Doc < 1 || me.Line < 1 {
				t.Fatalf("error without document or line: %+v", *me)
			}
			return
		}
		for _, format := range []string{"yaml", "json"} {
			enc, err := Encode(objs, format)
			if err != nil {
				t.Fatalf("encode %s: %v", format, err)
			}
			back, err := Decode("encoded", enc)
			if err != nil {
				t.Fatalf("decode of encoded %s: %v\n%s", format, err, enc)
			}
			if len(back) != len(objs) {
				t.Fatalf("%s: %d objects back, want %d", format, len(back), len(objs))
			}
			for i := range objs {
				if !sameContent(back[i], objs[i]) {
					t.Fatalf("%s: object %d changed:\n got %s\nwant %s\nencoded:\n%s", format, i, describeObject(back[i]), describeObject(objs[i]), enc)
				}
			}
		}
	})
}
