package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name, level, format string
		wantErr             string
	}{
		{name: "text info", level: "info", format: "text"},
		{name: "json debug", level: "debug", format: "json"},
		{name: "bad level", level: "loud", format: "text", wantErr: "log level"},
		{name: "bad format", level: "info", format: "xml", wantErr: "log format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New(&buf, tt.level, tt.format)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Info("hello", "k", "v")
			if tt.format == "json" {
				var m map[string]any
				if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["k"] != "v" {
					t.Fatalf("not JSON with k=v: %q (%v)", buf.String(), err)
				}
			} else if !strings.Contains(buf.String(), "k=v") {
				t.Fatalf("got %q", buf.String())
			}
		})
	}
}
