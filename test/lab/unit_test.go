package lab

// Unit tests of the lab's parts that need no VM: they run in every tier.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func frame(dst, src byte) []byte {
	f := make([]byte, 60)
	copy(f, []byte{2, 0, 0, 0, 0, dst, 2, 0, 0, 0, 0, src, 0x88, 0xb5})
	if dst == 0xff {
		copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
	return f
}

func recvd(h *HostPort) int {
	n := 0
	for {
		select {
		case <-h.Frames():
			n++
		case <-time.After(20 * time.Millisecond):
			return n
		}
	}
}

func TestSegmentLearningSwitch(t *testing.T) {
	s, err := newSegment("unit", t.TempDir()+"/seg.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	a, b, c := s.Attach("a"), s.Attach("b"), s.Attach("c")

	a.Send(frame(0xff, 0xa)) // broadcast from A: flooded, not back to a
	if got := [3]int{recvd(a), recvd(b), recvd(c)}; got != [3]int{0, 1, 1} {
		t.Errorf("broadcast reached a,b,c %v times, want 0,1,1", got)
	}
	b.Send(frame(0xa, 0xb)) // unicast to learned A: only a
	if got := [3]int{recvd(a), recvd(b), recvd(c)}; got != [3]int{1, 0, 0} {
		t.Errorf("unicast to a known MAC reached a,b,c %v times, want 1,0,0", got)
	}
	a.Send(frame(0x7, 0xa)) // unknown unicast: flooded
	if got := [3]int{recvd(a), recvd(b), recvd(c)}; got != [3]int{0, 1, 1} {
		t.Errorf("unknown unicast reached a,b,c %v times, want 0,1,1", got)
	}
	// Link down on a: nothing to or from a, and A is forgotten, so a frame
	// to A floods once a is back up and before A is learned again.
	s.setPortUp(a.key, false)
	b.Send(frame(0xa, 0xb))
	a.Send(frame(0xb, 0xa))
	if got := [3]int{recvd(a), recvd(b), recvd(c)}; got != [3]int{0, 0, 1} {
		t.Errorf("with a down, frames reached a,b,c %v times, want 0,0,1 (flooded to c only)", got)
	}
	s.setPortUp(a.key, true)
	c.Send(frame(0xa, 0xc))
	if got := [3]int{recvd(a), recvd(b), recvd(c)}; got != [3]int{1, 1, 0} {
		t.Errorf("after a came back, a frame to A reached a,b,c %v times, want 1,1,0 (flooded)", got)
	}
	st := s.Stats()
	if len(st) != 3 {
		t.Fatalf("stats: %v", st)
	}
}

// TestSegmentWedgedPort: a port that stops forwarding keeps its link and
// its learned MACs, and passes nothing either way: unicast to its MAC is
// lost (not flooded), broadcasts skip it, its own frames go nowhere.
func TestSegmentWedgedPort(t *testing.T) {
	s, err := newSegment("unit", t.TempDir()+"/seg.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	a, b, c := s.Attach("a"), s.Attach("b"), s.Attach("c")
	a.Send(frame(0xff, 0xa)) // A learned on a
	recvd(b)
	recvd(c)
	s.setPortForwarding(a.key, false)
	b.Send(frame(0xa, 0xb))  // to A: lost at the wedged port
	b.Send(frame(0xff, 0xb)) // broadcast: c only
	a.Send(frame(0xb, 0xa))  // from the wedged port: nowhere
	if got := [3]int{recvd(a), recvd(b), recvd(c)}; got != [3]int{0, 0, 1} {
		t.Errorf("with a wedged, frames reached a,b,c %v times, want 0,0,1", got)
	}
	for _, st := range s.Stats() {
		if st.Name == "a" && (!st.Up || st.Dropped != 2) {
			t.Errorf("wedged port: %+v, want up with 2 frames dropped", st)
		}
	}
	s.setPortForwarding(a.key, true)
	c.Send(frame(0xa, 0xc)) // A still known: unicast to a only
	if got := [3]int{recvd(a), recvd(b), recvd(c)}; got != [3]int{1, 0, 0} {
		t.Errorf("after a forwards again, a frame to A reached a,b,c %v times, want 1,0,0", got)
	}
}

// readCpio parses a newc archive (enough to check writeCpio).
func readCpio(t *testing.T, b []byte) map[string]cpioFile {
	t.Helper()
	out := map[string]cpioFile{}
	for off := 0; ; {
		if off%4 != 0 || len(b) < off+110 || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad header at %d", off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return int(v)
		}
		mode, size, nameLen := field(1), field(6), field(11)
		name := string(b[off+110 : off+110+nameLen-1])
		dataOff := (off + 110 + nameLen + 3) &^ 3
		data := b[dataOff : dataOff+size]
		off = (dataOff + size + 3) &^ 3
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out[name] = cpioFile{path: name, mode: uint32(mode), data: data}
	}
}

func TestCpio(t *testing.T) {
	files := []cpioFile{
		{path: "bin", mode: 0o040755},
		{path: "bin/busybox", mode: 0o100755, data: []byte("elf!!")},
		{path: "bin/sh", mode: 0o120777, target: "/bin/busybox"},
		{path: "init", mode: 0o100755, data: []byte("#!/bin/sh\n")},
	}
	var buf bytes.Buffer
	writeCpio(&buf, files)
	got := readCpio(t, buf.Bytes())
	if len(got) != 4 {
		t.Fatalf("%d entries, want 4", len(got))
	}
	if f := got["bin/sh"]; f.mode != 0o120777 || string(f.data) != "/bin/busybox" {
		t.Errorf("symlink: %o %q", f.mode, f.data)
	}
	if f := got["bin/busybox"]; f.mode != 0o100755 || string(f.data) != "elf!!" {
		t.Errorf("file: %o %q", f.mode, f.data)
	}
	var again bytes.Buffer
	writeCpio(&again, files)
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("writeCpio is not deterministic")
	}
}

func TestModuleNamesAndClosure(t *testing.T) {
	for in, want := range map[string]string{
		"/x/kernel/net/8021q/8021q.ko":          "8021q",
		"kernel/net/9p/9pnet-virtio.ko.xz":      "9pnet_virtio",
		"kernel/drivers/net/bonding/bonding.ko": "bonding",
		"kernel/net/packet/af_packet.ko.zst":    "af_packet",
		"modules.dep":                           "",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
	loaded := []LoadedModule{{Name: "llc"}, {Name: "stp", Deps: []string{"llc"}}, {Name: "mrp"}, {Name: "garp", Deps: []string{"llc", "stp"}}}
	if got := strings.Join(closure(loaded, []string{"garp", "mrp"}), " "); got != "llc stp mrp garp" {
		t.Errorf("closure = %q", got)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Name: "hv1", NICs: []NIC{{Segment: "a"}, {ID: "up", Segment: "b", Guest: "eno2", MAC: "52:54:00:AA:BB:CC"}}, Share: "/tmp"}
	if err := c.normalize(); err != nil {
		t.Fatal(err)
	}
	n0, n1 := c.NICs[0], c.NICs[1]
	if n0.ID != "nic0" || n0.Guest != "eth0" || n0.MAC != DefaultMAC("hv1", 0) || !macRE.MatchString(n0.MAC) {
		t.Errorf("defaults: %+v", n0)
	}
	if n1.MAC != "52:54:00:aa:bb:cc" || n1.Guest != "eno2" {
		t.Errorf("explicit: %+v", n1)
	}
	if c.MemMB != 512 || c.CPUs != 1 || len(c.Shares) != 1 || c.Shares[0].Guest != "/host" {
		t.Errorf("config defaults: %+v", c)
	}
	if DefaultMAC("hv1", 0) == DefaultMAC("hv2", 0) || DefaultMAC("hv1", 0) == DefaultMAC("hv1", 1) {
		t.Error("default MACs collide")
	}
	for i, bad := range []Config{
		{Name: "Bad_Name"},
		{Name: "x", NICs: []NIC{{ID: "a"}, {ID: "a"}}},
		{Name: "x", NICs: []NIC{{Guest: "eth0"}, {Guest: "eth0"}}},
		{Name: "x", NICs: []NIC{{MAC: "zz"}}},
		{Name: "x", NICs: []NIC{{Guest: "a-very-long-interface-name"}}},
		{Name: "x", Shares: []Share{{Host: "/tmp", Guest: "rel"}}},
	} {
		if err := bad.normalize(); err == nil {
			t.Errorf("bad config %d accepted", i)
		}
	}
	var many []NIC
	for i := 0; i < 15; i++ {
		many = append(many, NIC{Segment: fmt.Sprint(i)})
	}
	if err := (&Config{Name: "x", NICs: many}).normalize(); err == nil {
		t.Error("15 NICs accepted")
	}
}

func TestConfigDisks(t *testing.T) {
	img := filepath.Join(t.TempDir(), "root.img")
	if err := os.WriteFile(img, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Config{Name: "hv1", Initrd: img, Disks: []Disk{{Path: img, Snapshot: true}}}
	if err := c.normalize(); err != nil {
		t.Fatal(err)
	}
	if c.Disks[0].Format != "raw" {
		t.Errorf("default disk format %q, want raw", c.Disks[0].Format)
	}
	for i, bad := range []Config{
		{Name: "x", Disks: []Disk{{Path: "root.img"}}},
		{Name: "x", Disks: []Disk{{Path: img + ",x"}}},
		{Name: "x", Disks: []Disk{{Path: img + ".missing"}}},
		{Name: "x", Disks: []Disk{{Path: img, Format: "vmdk"}}},
		{Name: "x", Initrd: img + ".missing"},
	} {
		if err := bad.normalize(); err == nil {
			t.Errorf("bad disk config %d accepted", i)
		}
	}
}
