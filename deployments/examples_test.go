package deployments

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/vwire/vwire/registry/manifest"
)

// exampleDirs are the runnable examples: examples/<name>/ with a README.md
// (the architecture's YAML has none).
func exampleDirs(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob("examples/*/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range dirs {
		dirs[i] = filepath.Dir(d)
	}
	if len(dirs) == 0 {
		t.Fatal("no examples/*/README.md")
	}
	return dirs
}

// Every example's YAML is what `vwire apply` takes, as a whole, and what the
// CRDs accept, document by document.
func TestExamplesDecode(t *testing.T) {
	c := crds(t)
	files, err := filepath.Glob("examples/*/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no examples/*/*.yaml")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := manifest.Decode(filepath.Base(f), data); err != nil {
			t.Errorf("vwire apply -f %s: %v", f, err)
		}
		docs := splitDocuments(t, f)
		if len(docs) == 0 {
			t.Errorf("%s: no documents", f)
		}
		for _, d := range docs {
			if err := validateObject(c, decodeDocument(t, d)); err != nil {
				t.Errorf("%s: rejected by the CRD schema: %v", d, err)
			}
		}
	}
}

// Every vwire command of an example's README uses flags the command has.
func TestExampleCommandFlags(t *testing.T) {
	for _, dir := range exampleDirs(t) {
		readme := filepath.Join(dir, "README.md")
		for _, line := range shellLines(t, readme) {
			for _, args := range vwireInvocations(line) {
				cmd := realCommand(t, args)
				checkFlags(t, readme+": command "+strings.Join(args, " "), append(cmd, flagsFrom(args[len(cmd):])...))
			}
		}
	}
}

// shellLines are the lines of a README's ```sh blocks, continuation lines
// joined and comments cut.
func shellLines(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur strings.Builder
	in := false
	for l := range strings.SplitSeq(string(data), "\n") {
		switch {
		case strings.HasPrefix(l, "```sh"):
			in = true
			continue
		case strings.HasPrefix(l, "```"):
			in = false
			continue
		case !in:
			continue
		}
		if i := strings.Index(l, " #"); i >= 0 {
			l = l[:i]
		}
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			l = ""
		}
		if s, ok := strings.CutSuffix(strings.TrimRight(l, " "), "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	return out
}

var shellSeparator = regexp.MustCompile(`\s*(?:;|&&|\|\||&)\s*`)

// vwireInvocations are the argument lists given to vwire on a shell line
// (after `vwire`; a supplier's `-- vwire ...` is one more).
func vwireInvocations(line string) [][]string {
	var out [][]string
	for _, part := range shellSeparator.Split(line, -1) {
		fields := strings.Fields(part)
		i := slices.Index(fields, "vwire")
		for i >= 0 {
			args := fields[i+1:]
			next := -1
			if j := slices.Index(args, "--"); j >= 0 && j+1 < len(args) && args[j+1] == "vwire" {
				next = i + 1 + j + 1
				args = args[:j]
			}
			out = append(out, args)
			i = next
		}
	}
	return out
}

var commandWord = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// realCommand is the longest run of leading words of args that vwire knows
// as a command (`nse vl3` of `nse vl3 --service x`, `nsc` of
// `nsc kernel://...`).
func realCommand(t *testing.T, args []string) []string {
	t.Helper()
	n := 0
	for n < len(args) && commandWord.MatchString(args[n]) {
		n++
	}
	for ; n > 0; n-- {
		out, err := exec.Command(vwireBinary(t), append(slices.Clone(args[:n]), "--help")...).CombinedOutput()
		if err == nil && strings.Contains(string(out), "\n  vwire "+strings.Join(args[:n], " ")) {
			return args[:n]
		}
	}
	t.Fatalf("vwire %s: no such command", strings.Join(args, " "))
	return nil
}

// flagsFrom keeps the flags of args (and their values), dropping
// positional arguments before the first flag.
func flagsFrom(args []string) []string {
	for i, a := range args {
		if strings.HasPrefix(a, "-") {
			return args[i:]
		}
	}
	return nil
}
