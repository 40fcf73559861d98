package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/vwire/vwire/registry/store/etcdstore/etcdtest"
)

// TestRegistryEtcdTLS runs `vwire registry --store etcd` against an etcd
// that asks for client certificates: with --etcd-cert/--etcd-key/--etcd-ca
// it serves, and what it stores survives a second registry on the same
// etcd.
func TestRegistryEtcdTLS(t *testing.T) {
	srv := etcdtest.StartTLS(t)
	files := srv.TLS()
	state := t.TempDir()
	flags := []string{"--store", "etcd", "--etcd-endpoints", srv.Endpoints()[0], "--etcd-prefix", "/cli-tls/",
		"--etcd-cert", files.Cert, "--etcd-key", files.Key, "--etcd-ca", files.CA}
	c := startRegistry(t, state, flags...)
	stdin := "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata: {name: tls-service}\nspec: {payload: IP}\n"
	if _, errs, code := c.run(stdin, "apply", "-f", "-"); code != 0 {
		t.Fatalf("apply: exit %d: %s", code, errs)
	}
	second := startRegistry(t, state, flags...)
	if out := second.ok("get", "ns"); !strings.Contains(out, "tls-service") {
		t.Fatalf("second registry on the same etcd lists:\n%s", out)
	}
}

// TestRegistryStoreFlagErrors: a bad store flag stops `vwire registry` at
// once with one line that names the flag and the file.
func TestRegistryStoreFlagErrors(t *testing.T) {
	srv := etcdtest.StartTLS(t)
	files := srv.TLS()
	missing := filepath.Join(t.TempDir(), "missing.pem")
	etcd := []string{"registry", "--listen", "127.0.0.1:0", "--store", "etcd", "--etcd-endpoints", srv.Endpoints()[0]}
	c := cli{t: t, state: t.TempDir()}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "cert without key", args: append(etcd, "--etcd-cert", files.Cert), want: "--etcd-cert/--etcd-key/--etcd-ca: client certificate " + files.Cert + " given without its key"},
		{name: "missing cert", args: append(etcd, "--etcd-cert", missing, "--etcd-key", files.Key), want: missing + ": no such file"},
		{name: "missing CA", args: append(etcd, "--etcd-ca", missing), want: "CA file: open " + missing},
		{name: "CA is a key", args: append(etcd, "--etcd-ca", files.Key), want: "no PEM certificate"},
		{name: "no client certificate", args: append(etcd, "--etcd-ca", files.CA), want: "certificate required"},
		{name: "plain http with TLS files", args: []string{"registry", "--listen", "127.0.0.1:0", "--store", "etcd",
			"--etcd-endpoints", "http://127.0.0.1:1", "--etcd-ca", files.CA}, want: "must be https://127.0.0.1:1"},
		{name: "unknown store", args: []string{"registry", "--listen", "127.0.0.1:0", "--store", "disk"}, want: `--store "disk"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := c
			c.t = t
			_, errs, code := c.run("", tc.args...)
			if code == 0 {
				t.Fatal("exit 0")
			}
			if !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Fatalf("stderr %q: want one line containing %q", errs, tc.want)
			}
		})
	}
}
