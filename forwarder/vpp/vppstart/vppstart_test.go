package vppstart

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteConfig(t *testing.T) {
	dir := t.TempDir()
	path, err := WriteConfig(Config{Dir: dir, PluginPath: "/opt/vpp/plugins", PollSleepUsec: 100})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	for _, want := range []string{
		"socket-name " + dir + "/api.sock",
		"socket-name " + dir + "/stats.sock",
		"cli-listen " + dir + "/cli.sock",
		"main-heap-size 512M",
		"main-heap-page-size 4k",
		"buffers {\n  buffers-per-numa 16384\n  page-size 4k",
		"plugin dpdk_plugin.so { disable }",
		"path /opt/vpp/plugins",
		"poll-sleep-usec 100",
		"prefix vwire",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	if _, err := WriteConfig(Config{Dir: dir, MainHeapSize: "1G"}); err != nil {
		t.Fatal(err)
	} else if b, _ := os.ReadFile(path); !strings.Contains(string(b), "main-heap-size 1G\n") {
		t.Errorf("main heap of 1G not in:\n%s", b)
	}
	for _, bad := range []string{"512 M", "0", "-1G", "1T", "1G\nunix { }"} {
		if _, err := WriteConfig(Config{Dir: dir, MainHeapSize: bad}); err == nil {
			t.Errorf("main heap %q accepted", bad)
		}
	}
	if _, err := WriteConfig(Config{Dir: "relative"}); err == nil {
		t.Error("relative state directory accepted")
	}
	if _, err := WriteConfig(Config{Dir: "/" + strings.Repeat("d", 100)}); err == nil {
		t.Error("state directory too long for sockets accepted")
	}
}

func TestStartMissingBinary(t *testing.T) {
	_, err := Start(context.Background(), Config{Bin: filepath.Join(t.TempDir(), "no-vpp"), Dir: t.TempDir()})
	if err == nil {
		t.Fatal("started a binary that does not exist")
	}
}

func TestStartAndStop(t *testing.T) {
	bin := os.Getenv("VPP_BIN")
	if bin == "" {
		t.Skip("VPP_BIN not set: starting a real VPP needs its binary (and VPP_PLUGIN_PATH)")
	}
	dir, err := os.MkdirTemp("/tmp", "vwvs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	p, err := Start(context.Background(), Config{Bin: bin, PluginPath: os.Getenv("VPP_PLUGIN_PATH"), Dir: dir, PollSleepUsec: 100})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.APISocket); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(DefaultStopTimeout); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("VPP still running after Stop")
	}
	if err := p.Stop(DefaultStopTimeout); err != nil {
		t.Fatal("second Stop:", err)
	}
}
