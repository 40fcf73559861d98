// Package manifest reads and writes NetworkService and NetworkServiceEndpoint
// objects in the `networkservicemesh.io/v1` YAML (or JSON) form that
// `vwire apply -f` takes and `vwire get -o yaml|json` prints. Decoding is
// strict: an unknown field, a value of the wrong type or an object that
// registry/validate refuses is an error naming the file, the document, its
// line and the field path, and nothing is returned alongside it.
//
// YAML is read as YAML 1.1 (go.yaml.in/yaml/v2, the parser under
// sigs.k8s.io/yaml), so it reads as Kubernetes does: where a selector or label
// value is written unquoted and YAML reads it as a boolean or a number, its
// string form is used (`supplier: true` is "true", `weight: 3` is "3"). YAML
// 1.1 also reads `yes`, `on` and `y` as true and `1.10` as the number 1.1, for
// keys too (`on: x` is the key "true"): quote such values and keys.
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/networkservicemesh/api/pkg/api/registry"
	"go.yaml.in/yaml/v2"
)

// The apiVersion and kinds of the manifests this package reads and writes.
const (
	APIVersion   = "networkservicemesh.io/v1"
	KindService  = "NetworkService"
	KindEndpoint = "NetworkServiceEndpoint"
)

// maxDepth bounds the nesting of a document; the schema needs 7 levels.
const maxDepth = 32

// Object is one decoded document: exactly one of Service and Endpoint is set,
// as Kind says.
type Object struct {
	// Doc is the 1-based index of the document among the non-empty documents
	// of the input; Line is the 1-based line its content starts on.
	Doc      int
	Line     int
	Kind     string
	Service  *registry.NetworkService
	Endpoint *registry.NetworkServiceEndpoint
}

// Error is a decoding failure. Doc is the 1-based index of the document (as in
// Object.Doc). Line is the line of the error when the parser knows it, else
// the line the document starts on. Path is the field, spelled as in the
// manifest (`spec.matches[2].source_selector.routes`); empty for syntax errors.
type Error struct {
	File string
	Doc  int
	Line int
	Path string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "document %d (line %d): ", e.Doc, e.Line)
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Decode reads every object of data: YAML documents separated by `---` lines,
// or JSON (one object, several concatenated objects, or an array of objects).
// name is the file name used in errors. Documents that are empty or hold only
// comments are skipped and not counted. Each object is checked against the
// schema and with registry/validate; the first error found is returned, and
// then no objects at all.
func Decode(name string, data []byte) ([]Object, error) {
	data = normalizeInput(data)
	var objs []Object
	add := func(doc, line int, v any) error {
		obj, err := decodeObject(v)
		if err != nil {
			return &Error{File: name, Doc: doc, Line: line, Path: err.Path, Msg: err.Msg}
		}
		obj.Doc, obj.Line = doc, line
		objs = append(objs, obj)
		return nil
	}
	var err error
	if isJSON(data) {
		err = jsonDocuments(name, data, add)
	} else {
		err = yamlDocuments(name, data, add)
	}
	if err != nil {
		return nil, err
	}
	return objs, nil
}

// normalizeInput drops a UTF-8 byte order mark and turns CRLF and lone CR line
// ends into LF. Both YAML and JSON treat every one of them as a line break
// (JSON allows raw CR only between tokens), so nothing changes meaning.
func normalizeInput(data []byte) []byte {
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	if bytes.IndexByte(data, '\r') < 0 {
		return data
	}
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(data, []byte("\r"), []byte("\n"))
}

// isJSON reports whether the input is JSON: its first character opens an
// object or an array. (A YAML file written in flow style from its first
// character is read as JSON too.)
func isJSON(data []byte) bool {
	s := bytes.TrimLeft(data, " \t\n")
	return len(s) > 0 && (s[0] == '{' || s[0] == '[')
}

// yamlDocuments splits data at document markers (`---` or `...` at the start
// of a line, alone or followed by blanks) and parses each part, calling add for
// each non-empty document in order. The splitting is ours so that each
// document's line numbers are known.
func yamlDocuments(file string, data []byte, add func(doc, line int, v any) error) error {
	lines := strings.Split(string(data), "\n")
	doc := 0
	start := 0 // index in lines of the first line of the current part
	flush := func(end int) error {
		if start >= end {
			return nil
		}
		part := strings.Join(lines[start:end], "\n")
		v, empty, err := parseYAML(part)
		if empty {
			return nil
		}
		doc++
		first := start + firstContentLine(lines[start:end]) + 1
		if err != nil {
			line, msg := yamlErrorLine(err, start+1)
			if line == 0 {
				line = first
			}
			return &Error{File: file, Doc: doc, Line: line, Msg: msg}
		}
		return add(doc, first, v)
	}
	for i, l := range lines {
		if !isDocumentMarker(l) {
			continue
		}
		if err := flush(i); err != nil {
			return err
		}
		// Anything after the marker on its line belongs to the next
		// document; blank the marker itself to keep the columns.
		lines[i] = "   " + l[3:]
		start = i
	}
	return flush(len(lines))
}

func isDocumentMarker(line string) bool {
	if !strings.HasPrefix(line, "---") && !strings.HasPrefix(line, "...") {
		return false
	}
	return len(line) == 3 || line[3] == ' ' || line[3] == '\t'
}

// firstContentLine returns the index of the first line that is neither blank
// nor a comment, or 0.
func firstContentLine(lines []string) int {
	for i, l := range lines {
		t := strings.TrimLeft(l, " \t")
		if t != "" && t[0] != '#' {
			return i
		}
	}
	return 0
}

// parseYAML parses one document. empty reports a part with no document in it
// (only blanks and comments). More than one document in the part is an error:
// YAML also takes line breaks we do not split at (U+0085, U+2028, U+2029)
// before a `---`, and a document after it must not be dropped silently. (This
// is why the part goes through yaml.v2's Decoder here rather than
// sigs.k8s.io/yaml.YAMLToJSON, which reads the first document and ignores the
// rest; fromYAML then keeps numbers as text as YAMLToJSON followed by a
// json.Decoder with UseNumber would.)
func parseYAML(part string) (v any, empty bool, err error) {
	dec := yaml.NewDecoder(strings.NewReader(part))
	dec.SetStrict(true)
	var raw any
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true, nil
		}
		return nil, false, err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, false, errors.New("a second document starts inside this one: separate documents with a line holding only ---")
	}
	v, err = fromYAML(raw, 0)
	return v, false, err
}

// fromYAML converts a value from go.yaml.in/yaml/v2 to the form JSON decodes
// to with UseNumber: map[string]any, []any, string, json.Number, bool, nil.
// Scalar map keys take their string form as in sigs.k8s.io/yaml.
func fromYAML(v any, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested more than %d levels deep", maxDepth)
	}
	switch v := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, val := range v {
			ks, err := yamlKey(k)
			if err != nil {
				return nil, err
			}
			if _, dup := m[ks]; dup {
				return nil, fmt.Errorf("key %q appears twice in one map", ks)
			}
			if m[ks], err = fromYAML(val, depth+1); err != nil {
				return nil, err
			}
		}
		return m, nil
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			var err error
			if l[i], err = fromYAML(e, depth+1); err != nil {
				return nil, err
			}
		}
		return l, nil
	case string:
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("text %q is not valid UTF-8", v)
		}
		return v, nil
	case nil, bool:
		return v, nil
	case time.Time:
		return v.Format(time.RFC3339Nano), nil
	default:
		s, err := yamlNumber(v)
		if err != nil {
			return nil, err
		}
		return json.Number(s), nil
	}
}

func yamlKey(k any) (string, error) {
	switch k := k.(type) {
	case string:
		if !utf8.ValidString(k) {
			return "", fmt.Errorf("map key %q is not valid UTF-8", k)
		}
		return k, nil
	case bool:
		return strconv.FormatBool(k), nil
	case nil:
		return "", errors.New("a map key is null")
	default:
		return yamlNumber(k)
	}
}

func yamlNumber(v any) (string, error) {
	switch v := v.(type) {
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return "", fmt.Errorf("number %v is not supported", v)
		}
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	default:
		return "", fmt.Errorf("unsupported YAML value of type %T", v)
	}
}

var (
	yamlLineRE       = regexp.MustCompile(`\bline (\d+)\b`)
	yamlLeadingLine  = regexp.MustCompile(`^line (\d+): `)
	yamlMultiErrHead = "unmarshal errors:"
)

// yamlErrorLine turns a parser error into one line and, when it names a line,
// into the line of the file: partStart is the file line of the part's first
// line. line is 0 when the error names none.
func yamlErrorLine(err error, partStart int) (line int, msg string) {
	msg = strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimSpace(strings.TrimPrefix(msg, yamlMultiErrHead))
	msg = yamlLineRE.ReplaceAllStringFunc(msg, func(s string) string {
		n, _ := strconv.Atoi(s[len("line "):])
		return "line " + strconv.Itoa(n+partStart-1)
	})
	if m := yamlLeadingLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	msg = strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", " ; ")), " ")
	return line, msg
}

// jsonDocuments reads a stream of JSON values; a top-level array contributes
// each of its elements as a document.
func jsonDocuments(file string, data []byte, add func(doc, line int, v any) error) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	lines := newLineIndex(data)
	doc := 0
	// After a failed Token the decoder stands at the value or character it
	// could not read: the line of that is the line of the error. (The
	// Offset of a json.SyntaxError may count from the start of the value.)
	fail := func(err error) error {
		at := skipBlanks(data, dec.InputOffset())
		msg := err.Error()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			msg = "unexpected end of JSON input"
			at = int64(len(data))
		}
		return &Error{File: file, Doc: doc + 1, Line: lines.at(at), Msg: msg}
	}
	// document reads the value starting at offset at, whose first token is
	// tok, and hands it to add. JSON text must be UTF-8; the decoder would
	// quietly replace bad bytes, so they are looked for here.
	document := func(at int64, tok json.Token, depth int) error {
		v, err := jsonValue(dec, tok, depth)
		if err != nil {
			return fail(err)
		}
		doc++
		if bad := invalidUTF8(data[at:dec.InputOffset()]); bad >= 0 {
			return &Error{File: file, Doc: doc, Line: lines.at(at + int64(bad)), Msg: "text is not valid UTF-8"}
		}
		return add(doc, lines.at(at), v)
	}
	for {
		at := valueStart(data, dec.InputOffset())
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fail(err)
		}
		if tok != json.Delim('[') {
			if err := document(at, tok, 0); err != nil {
				return err
			}
			continue
		}
		for dec.More() {
			at := valueStart(data, dec.InputOffset())
			tok, err := dec.Token()
			if err != nil {
				return fail(err)
			}
			if err := document(at, tok, 1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // the closing ']'
			return fail(err)
		}
	}
}

// invalidUTF8 returns the offset of the first byte of b that is not part of
// valid UTF-8, or -1.
func invalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

// jsonValue reads the rest of the value that tok begins. A key given twice in
// one object is an error, as it is in YAML.
func jsonValue(dec *json.Decoder, tok json.Token, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested more than %d levels deep", maxDepth)
	}
	switch tok {
	case json.Delim('{'):
		m := map[string]any{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, ok := kt.(string)
			if !ok {
				return nil, fmt.Errorf("object key is not a string")
			}
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("key %q appears twice in one object", k)
			}
			vt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			if m[k], err = jsonValue(dec, vt, depth+1); err != nil {
				return nil, err
			}
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return m, nil
	case json.Delim('['):
		l := []any{}
		for dec.More() {
			vt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := jsonValue(dec, vt, depth+1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return l, nil
	}
	return tok, nil // string, json.Number, bool or nil
}

// valueStart skips the blanks and the separating comma after off.
func valueStart(data []byte, off int64) int64 {
	off = skipBlanks(data, off)
	if off < int64(len(data)) && data[off] == ',' {
		off = skipBlanks(data, off+1)
	}
	return off
}

func skipBlanks(data []byte, off int64) int64 {
	for off < int64(len(data)) && (data[off] == ' ' || data[off] == '\t' || data[off] == '\n') {
		off++
	}
	return off
}

// lineIndex holds the offsets at which lines start.
type lineIndex []int64

func newLineIndex(data []byte) lineIndex {
	idx := lineIndex{0}
	for i, c := range data {
		if c == '\n' {
			idx = append(idx, int64(i+1))
		}
	}
	return idx
}

// at returns the 1-based line holding offset off.
func (idx lineIndex) at(off int64) int {
	i, found := slices.BinarySearch(idx, off)
	if found {
		return i + 1
	}
	return i
}
