package layering

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// forbiddenCalls are methods of our dependencies that vwire must not call,
// with the reason. A race detector sees their harm only when the timing
// lines up; this sees every call.
var forbiddenCalls = map[string]string{
	// grpc-go v1.85.0 walks the channel's subchannel map after releasing
	// its lock: a heal racing with the balancer crashed the manager with
	// "concurrent map iteration and map write". Use grpcutil.Conn.Retry.
	"ResetConnectBackoff": "races with the gRPC balancer (fatal concurrent map access); use grpcutil's Conn.Retry",
}

func TestNoForbiddenCalls(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
				if why, bad := forbiddenCalls[sel.Sel.Name]; bad {
					t.Errorf("%s: calls %s: %s", fset.Position(call.Pos()), sel.Sel.Name, why)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("read only %d Go files under %s: not the vwire tree", files, root)
	}
}
