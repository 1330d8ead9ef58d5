package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gallium/gallium-net/domains"
)

var fuzzOps = []struct{ dir, op, subop string }{
	{"qemu.d", "prepare", "begin"},
	{"qemu.d", "start", "begin"},
	{"qemu.d", "reconnect", "begin"},
	{"qemu.d", "migrate", "begin"},
	{"qemu.d", "restore", "begin"},
	{"qemu.d", "stopped", "end"},
	{"qemu.d", "release", "end"},
	{"network.d", "port-created", "begin"},
	{"network.d", "port-deleted", "begin"},
	{"network.d", "updated", "begin"},
}

// FuzzHookInput feeds arbitrary stdin to every operation the hook acts on,
// with a fake kernel. Whatever the input: no panic, reconnect/stopped/release
// exit 0, a failure says something on stderr, and stdout carries nothing but
// a parseable domain, only for migrate/restore.
func FuzzHookInput(f *testing.F) {
	seeds := []string{
		domainXML("vm1", uuid1, true, 2, "flat"),
		domainXML("vm1", uuid1, true, 1, "prod"),
		domainXML("plain", uuid1, false, 1, "flat"),
		strings.Replace(domainXML("vm1", uuid1, true, 1, "jumbo"), `<model type="virtio"/>`, `<model type="virtio"/><mtu size="1500"/>`, 1),
		`<domain><metadata><gallium:net ` + ns + `><gallium:nic mac="zz" network=""/></gallium:net></metadata></domain>`,
		`<domstatus><domain><name>x</name></domain></domstatus>`,
		hookDataXML("flat", "gbr-vm", "52:54:00:00:00:01", "vm1", uuid1),
		hookDataXML("flat", "gbr-vm", "", "", ""),
		"",
		"<",
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	// One snapshot for every input (it is only read); records and log get a
	// fresh directory per input.
	snapPath := filepath.Join(f.TempDir(), "snapshot.json")
	writeTestSnapshot(f, snapPath)
	f.Fuzz(func(t *testing.T, which uint8, stdin []byte) {
		op := fuzzOps[int(which)%len(fuzzOps)]
		dir := t.TempDir()
		e := env{StateDir: filepath.Join(dir, "state"), SnapshotPath: snapPath, LogPath: filepath.Join(dir, "hook.log"), Kernel: newFakeKernel(), LockTimeout: 5 * time.Second}
		code, out, errOut := runHook(e, op.dir, "vm1", op.op, op.subop, string(stdin))
		switch op.op {
		case "reconnect", "stopped", "release", "port-deleted", "updated":
			if code != 0 {
				t.Fatalf("%s exited %d: %s", op.op, code, errOut)
			}
		}
		if code != 0 && strings.TrimSpace(errOut) == "" {
			t.Fatalf("%s failed without a message", op.op)
		}
		if out != "" {
			if op.op != "migrate" && op.op != "restore" {
				t.Fatalf("%s wrote to stdout: %q", op.op, out)
			}
			if _, err := domains.ParseDomain([]byte(out)); err != nil {
				t.Fatalf("%s printed a domain that does not parse: %v\n%s", op.op, err, out)
			}
			if bytes.Equal([]byte(out), stdin) {
				t.Fatalf("%s printed the unchanged domain; it must print nothing then", op.op)
			}
		}
	})
}
