package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gallium/gallium-net/netsetup"
)

// vmPlan is one VM of the run: on which hypervisor, its hardware profile
// and its NICs' networks (each VM has a tagged network; two have the
// untagged one).
type vmPlan struct {
	HV, Name, Profile string
	Networks          []string
}

var vmPlans = []vmPlan{
	{"hv1", "web1", "modern", []string{"prod", "flat"}},
	{"hv2", "db2", "legacy", []string{"prod", "dev"}},
	{"hv3", "ci3", "modern", []string{"dev", "flat"}},
}

// vmXML is a diskless domain that boots haltKernel: enough for QEMU to run
// and libvirt to plug taps (nested TCG in a lab hypervisor), while its one
// vCPU sleeps. Without a kernel SeaBIOS would PXE-boot through each NIC's
// iPXE ROM, which spins the nested vCPU and starves the lab hypervisor
// (etcd timed out, virsh start took 40-50 s). ACPI keeps pci.0 hot-pluggable.
// 16 MiB is plenty for a kernel that halts, and a live migration copies
// (or at least scans under nested TCG) every page of it.
func vmXML(name string) string {
	return `<domain type='qemu'><name>` + name + `</name><memory unit='MiB'>16</memory><vcpu>1</vcpu>` +
		`<os><type arch='x86_64' machine='pc'>hvm</type><kernel>` + haltKernelPath + `</kernel></os>` +
		`<features><acpi/></features><devices/></domain>`
}

// haltKernelPath is where the lab hypervisors see haltKernel (the share).
const haltKernelPath = "/share/halt.mb"

// haltKernel is a multiboot (v1) image that QEMU loads directly (-kernel):
// a header with the a.out kludge (flag 16: load it at 1 MiB as is) and
// the code "cli; hlt; jmp .-1" at the entry point, so the guest halts for
// good with interrupts off. Padded to 8 KiB, the span QEMU reads to tell a
// Linux or multiboot image apart.
func haltKernel() []byte {
	const (
		magic = 0x1BADB002
		flags = 0x00010000
		base  = 0x100000
	)
	img := make([]byte, 8192)
	put := func(off int, v uint32) { binary.LittleEndian.PutUint32(img[off:], v) }
	put(0, magic)
	put(4, flags)
	var m, f uint32 = magic, flags
	put(8, -(m + f))
	put(12, base)    // header_addr
	put(16, base)    // load_addr
	put(20, 0)       // load_end_addr: the whole file
	put(24, 0)       // bss_end_addr: no bss
	put(28, base+32) // entry_addr
	copy(img[32:], []byte{0xfa, 0xf4, 0xeb, 0xfd})
	return img
}

// wantVLAN is the bridge VLAN a network's taps must carry untagged (and as
// PVID): the network's tag, or the bridges' native VLAN 1 when untagged.
func (s *Scenario) wantVLAN(network string) int {
	if n := s.spec.Network(network); n.Tagged() {
		return n.VLAN
	}
	return netsetup.NativeVID
}

// ifaceRow is one line of virsh domiflist.
type ifaceRow struct{ Tap, Source, Model, MAC string }

func domiflist(ctx context.Context, h *Hypervisor, dom string) ([]ifaceRow, error) {
	out, err := h.Virsh(ctx, "domiflist "+dom)
	if err != nil {
		return nil, err
	}
	var rows []ifaceRow
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 5 && strings.Count(f[4], ":") == 5 {
			rows = append(rows, ifaceRow{Tap: f[0], Source: f[2], Model: f[3], MAC: f[4]})
		}
	}
	return rows, nil
}

// bridgeVLANs are the VLANs of one bridge port (bridge -j vlan show dev).
type bridgeVLAN struct {
	VLAN  int      `json:"vlan"`
	Flags []string `json:"flags"`
}

func portVLANs(ctx context.Context, h *Hypervisor, dev string) ([]bridgeVLAN, error) {
	var ports []struct {
		Ifname string       `json:"ifname"`
		VLANs  []bridgeVLAN `json:"vlans"`
	}
	if err := runJSON(ctx, h, "bridge -j vlan show dev "+dev, &ports); err != nil {
		return nil, err
	}
	if len(ports) != 1 {
		return nil, fmt.Errorf("bridge vlan show dev %s: %d ports", dev, len(ports))
	}
	return ports[0].VLANs, nil
}

func (s *Scenario) stepVMs(ctx context.Context) error {
	var mu sync.Mutex
	err := each(s.hvs, func(h *Hypervisor) error {
		for _, p := range vmPlans {
			if p.HV != h.Name {
				continue
			}
			if err := h.Put(ctx, "/root/"+p.Name+".xml", []byte(vmXML(p.Name)), 0o644); err != nil {
				return err
			}
			if _, err := h.Virsh(ctx, "define /root/"+p.Name+".xml"); err != nil {
				return err
			}
			// MACs from the cluster ledger in etcd, the model from the
			// profile: the three hypervisors allocate at the same time.
			for i, n := range p.Networks {
				cmd := "gallium-net nic add " + p.Name + " --network " + n
				if i == 0 {
					cmd += " --profile " + p.Profile
				}
				if _, err := run(ctx, h, cmd); err != nil {
					return err
				}
			}
			t0 := time.Now()
			if _, err := h.Virsh(ctx, "start "+p.Name); err != nil {
				log, _, _ := h.Run(ctx, "journalctl -b -t gallium-net-hook -n 5 --no-pager; tail -5 /var/log/libvirt/qemu/"+p.Name+".log")
				return fmt.Errorf("%w\n%s", err, log)
			}
			took := time.Since(t0)
			rows, err := domiflist(ctx, h, p.Name)
			if err != nil {
				return err
			}
			if len(rows) != len(p.Networks) {
				return fmt.Errorf("domain %s has %d interfaces, want %d: %+v", p.Name, len(rows), len(p.Networks), rows)
			}
			for i, r := range rows {
				net := p.Networks[i]
				if r.Source != net {
					return fmt.Errorf("domain %s NIC %s: source %s, want network %s", p.Name, r.MAC, r.Source, net)
				}
				if want := s.spec.Profile(p.Profile).NICModel; r.Model != want {
					return fmt.Errorf("domain %s NIC %s: model %s, want %s (profile %s)", p.Name, r.MAC, r.Model, want, p.Profile)
				}
				master, err := run(ctx, h, "basename $(readlink /sys/class/net/"+r.Tap+"/master)")
				if err != nil {
					return err
				}
				if m := strings.TrimSpace(master); m != "gbr-vmgroup" {
					return fmt.Errorf("domain %s tap %s is on %q, want gbr-vmgroup", p.Name, r.Tap, m)
				}
				// The hook's work: only the network's VLAN, as PVID,
				// untagged, on the tap.
				vl, err := portVLANs(ctx, h, r.Tap)
				if err != nil {
					return err
				}
				want := s.wantVLAN(net)
				if len(vl) != 1 || vl[0].VLAN != want || !slices.Contains(vl[0].Flags, "PVID") || !slices.Contains(vl[0].Flags, "Egress Untagged") {
					return fmt.Errorf("domain %s tap %s (network %s): bridge VLANs %+v, want only VLAN %d PVID untagged", p.Name, r.Tap, net, vl, want)
				}
				// What the hook did, read back from the journal: on
				// libvirt >= 11 the network carries <vlan> and libvirt
				// tags the tap itself ("tap already right"); before, the
				// hook programs it ("tap programmed").
				hook, err := hookJournal(ctx, h, p.Name, r.Tap)
				if err != nil {
					return err
				}
				if hook == "" {
					return fmt.Errorf("domain %s tap %s: no hook line about it in the journal", p.Name, r.Tap)
				}
				mu.Lock()
				s.Report.NICs = append(s.Report.NICs, NICReport{Hypervisor: h.Name, Domain: p.Name, Network: net, VLAN: want, Model: r.Model, MAC: r.MAC, Tap: r.Tap, Hook: hook})
				mu.Unlock()
			}
			s.logf("  %s: %s started in %s, NICs %s", h.Name, p.Name, took.Round(100*time.Millisecond), nicSummary(rows, p.Networks, s))
		}
		return nil
	})
	sort.Slice(s.Report.NICs, func(i, j int) bool {
		a, b := s.Report.NICs[i], s.Report.NICs[j]
		return a.Hypervisor+a.Domain+a.Tap < b.Hypervisor+b.Domain+b.Tap
	})
	return err
}

func nicSummary(rows []ifaceRow, nets []string, s *Scenario) string {
	var parts []string
	for i, r := range rows {
		parts = append(parts, fmt.Sprintf("%s %s %s on %s (VLAN %d)", r.Tap, r.MAC, r.Model, nets[i], s.wantVLAN(nets[i])))
	}
	return strings.Join(parts, ", ")
}

// ledgerNIC is one entry of gallium-net state nics -o json.
type ledgerNIC struct {
	DomainUUID string `json:"domainUUID"`
	Key        string `json:"key"`
	Domain     string `json:"domain"`
	MAC        string `json:"mac"`
	Network    string `json:"network"`
	Model      string `json:"model"`
	Hypervisor string `json:"hypervisor"`
}

// burstPerHV is how many MACs each hypervisor allocates at once with the
// others in the MAC-uniqueness step. Each 'mac allocate' is slow under
// emulation and runs one after the other on a host (see README for the
// figures): 2 still puts every host's allocations against the others'.
const burstPerHV = 2

func (s *Scenario) stepMACs(ctx context.Context) error {
	// 1. The running VMs' MACs are distinct across the cluster, and the
	// ledger (read from another hypervisor) has each, with its owner.
	seen := map[string]NICReport{}
	for _, n := range s.Report.NICs {
		if o, dup := seen[n.MAC]; dup {
			return fmt.Errorf("MAC %s on %s/%s and on %s/%s", n.MAC, o.Hypervisor, o.Domain, n.Hypervisor, n.Domain)
		}
		seen[n.MAC] = n
	}
	var ledger []ledgerNIC
	if err := runJSON(ctx, s.hvs[2], "gallium-net state nics -o json", &ledger); err != nil {
		return err
	}
	inLedger := map[string]ledgerNIC{}
	for _, l := range ledger {
		inLedger[strings.ToLower(l.MAC)] = l
	}
	for mac, n := range seen {
		l, ok := inLedger[strings.ToLower(mac)]
		if !ok {
			return fmt.Errorf("MAC %s of %s/%s is not in the cluster ledger", mac, n.Hypervisor, n.Domain)
		}
		if l.Hypervisor != n.Hypervisor || l.Domain != n.Domain || l.Network != n.Network {
			return fmt.Errorf("ledger says MAC %s is %s/%s on %s, libvirt says %s/%s on %s", mac, l.Hypervisor, l.Domain, l.Network, n.Hypervisor, n.Domain, n.Network)
		}
	}
	// 2. A burst: the three hypervisors allocate at the same time through
	// etcd's compare-and-swap; no two get the same MAC.
	var mu sync.Mutex
	burst := map[string]string{}
	var dups []string
	t0 := time.Now()
	err := each(s.hvs, func(h *Hypervisor) error {
		for i := 0; i < burstPerHV; i++ {
			var nic ledgerNIC
			cmd := fmt.Sprintf("gallium-net mac allocate --domain-uuid burst-%s --key net%d --network prod --domain burst-%s -o json", h.Name, i, h.Name)
			if err := runJSON(ctx, h, cmd, &nic); err != nil {
				return err
			}
			mu.Lock()
			mac := strings.ToLower(nic.MAC)
			if o, dup := burst[mac]; dup {
				dups = append(dups, fmt.Sprintf("%s to %s and %s/net%d", mac, o, h.Name, i))
			}
			if n, dup := seen[nic.MAC]; dup {
				dups = append(dups, fmt.Sprintf("%s to %s/net%d and VM %s/%s", mac, h.Name, i, n.Hypervisor, n.Domain))
			}
			burst[mac] = fmt.Sprintf("%s/net%d", h.Name, i)
			mu.Unlock()
		}
		return nil
	})
	took := time.Since(t0)
	if err != nil {
		return err
	}
	if len(dups) > 0 {
		return fmt.Errorf("duplicate MACs: %v", dups)
	}
	// Released again: the burst was only a test of the ledger.
	err = each(s.hvs, func(h *Hypervisor) error {
		for i := 0; i < burstPerHV; i++ {
			if _, err := run(ctx, h, fmt.Sprintf("gallium-net mac release --domain-uuid burst-%s --key net%d", h.Name, i)); err != nil {
				return err
			}
		}
		// And nothing on this host is duplicated or unknown to the ledger.
		_, err := run(ctx, h, "gallium-net mac check")
		return err
	})
	if err != nil {
		return err
	}
	s.Report.MACs = MACReport{VMNICs: len(seen), Burst: len(burst), BurstHVs: len(s.hvs), BurstTook: took}
	s.logf("  %d VM NICs with distinct MACs, all in the etcd ledger; burst: %d MACs allocated concurrently by %d hypervisors in %s, 0 duplicates",
		len(seen), len(burst), len(s.hvs), took.Round(100*time.Millisecond))
	return nil
}

// probePort is a network namespace in a hypervisor with a veth on the VM
// bridge, on one VLAN the way the hook puts a VM's tap: a stand-in for a
// VM NIC that can answer pings (the lab's nested VMs have no userland).
type probePort struct {
	HV, Name string
	VLAN     int
	IP       string
}

func (p probePort) setup() string {
	vlan := fmt.Sprintf("bridge vlan del dev %[1]s vid 1; bridge vlan add dev %[1]s vid %[2]d pvid untagged", "h-"+p.Name, p.VLAN)
	if p.VLAN == 1 {
		vlan = "true"
	}
	return fmt.Sprintf(`set -e
ip netns add %[1]s
ip netns exec %[1]s sysctl -qw net.ipv6.conf.all.disable_ipv6=1
ip link add h-%[1]s type veth peer name eth0 netns %[1]s
ip link set h-%[1]s master gbr-vmgroup
%[2]s
ip link set h-%[1]s up
ip -n %[1]s addr add %[3]s/24 dev eth0
ip -n %[1]s link set eth0 up
ip -n %[1]s link set lo up`, p.Name, vlan, p.IP)
}

// tagged is what the host-side observer saw on the VM segment: for each
// source MAC, the VLAN tags its frames carried (0 = untagged).
type tagged struct {
	mu   sync.Mutex
	tags map[string]map[int]int
	arps map[string]map[int]int // target IP -> VLAN -> ARP requests
}

// frameHead is an Ethernet frame's source MAC, 802.1Q VLAN (0: untagged),
// EtherType and payload offset; ok is false for a runt.
func frameHead(f []byte) (src string, vid int, et uint16, off int, ok bool) {
	if len(f) < 14 {
		return "", 0, 0, 0, false
	}
	src = net.HardwareAddr(f[6:12]).String()
	et, off = binary.BigEndian.Uint16(f[12:14]), 14
	if et == 0x8100 && len(f) >= 18 {
		vid = int(binary.BigEndian.Uint16(f[14:16]) & 0xfff)
		et, off = binary.BigEndian.Uint16(f[16:18]), 18
	}
	return src, vid, et, off, true
}

func (t *tagged) add(f []byte) {
	src, vid, et, off, ok := frameHead(f)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tags[src] == nil {
		t.tags[src] = map[int]int{}
	}
	t.tags[src][vid]++
	if et == 0x0806 && len(f) >= off+28 && binary.BigEndian.Uint16(f[off+6:off+8]) == 1 {
		ip := net.IP(f[off+24 : off+28]).String()
		if t.arps[ip] == nil {
			t.arps[ip] = map[int]int{}
		}
		t.arps[ip][vid]++
	}
}

// observe attaches a port called name to a lab segment and hands every
// frame the switch floods or forwards to it to f, with the time it arrived,
// until stop (which may be called more than once).
func (s *Scenario) observe(segment, name string, f func(at time.Time, frame []byte)) (stop func()) {
	port := s.lab.Segment(segment).Attach(name)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case fr := <-port.Frames():
				f(time.Now(), fr)
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			port.Close()
		})
	}
}

func (s *Scenario) stepIsolation(ctx context.Context) error {
	// An observer port on the VM segment's switch: it sees every flooded
	// frame (ARP, broadcasts) between the hypervisors' VM bonds.
	obs := &tagged{tags: map[string]map[int]int{}, arps: map[string]map[int]int{}}
	stop := s.observe("vms", "observer", func(_ time.Time, f []byte) { obs.add(f) })
	defer stop()

	ports := []probePort{
		{"hv1", "p-prod", 100, "10.77.0.1"},
		{"hv1", "p-dev", 200, "10.77.0.5"},
		{"hv2", "p-prod", 100, "10.77.0.2"},
		{"hv2", "p-dev", 200, "10.77.0.3"},
		{"hv2", "p-flat", 1, "10.77.0.4"},
		// hv3 runs Debian 13 (libvirt 11.3, which tags its VMs' taps
		// itself): the same wire result is wanted from it.
		{"hv3", "p-prod", 100, "10.77.0.6"},
		{"hv3", "p-dev", 200, "10.77.0.7"},
		{"hv3", "p-flat", 1, "10.77.0.8"},
	}
	for _, p := range ports {
		if _, err := run(ctx, s.hv(p.HV), p.setup()); err != nil {
			return fmt.Errorf("probe port %s on %s: %w", p.Name, p.HV, err)
		}
	}
	// All on one IP subnet: only the VLANs keep them apart.
	type pingCheck struct {
		fromHV, fromNS, to string
		reach              bool
		what               string
	}
	checks := []pingCheck{
		{"hv1", "p-prod", "10.77.0.2", true, "prod hv1 -> prod hv2 (VLAN 100 across the VM bonds)"},
		{"hv2", "p-dev", "10.77.0.5", true, "dev hv2 -> dev hv1 (VLAN 200)"},
		{"hv1", "p-prod", "10.77.0.3", false, "prod hv1 -> dev hv2"},
		{"hv1", "p-prod", "10.77.0.4", false, "prod hv1 -> flat (untagged) hv2"},
		{"hv2", "p-dev", "10.77.0.1", false, "dev hv2 -> prod hv1"},
		{"hv2", "p-flat", "10.77.0.1", false, "flat hv2 -> prod hv1"},
		{"hv3", "p-prod", "10.77.0.1", true, "prod hv3 (Debian 13) -> prod hv1 (VLAN 100)"},
		{"hv3", "p-dev", "10.77.0.3", true, "dev hv3 -> dev hv2 (VLAN 200)"},
		{"hv3", "p-prod", "10.77.0.3", false, "prod hv3 -> dev hv2"},
		{"hv3", "p-dev", "10.77.0.1", false, "dev hv3 -> prod hv1"},
		{"hv3", "p-flat", "10.77.0.1", false, "flat hv3 -> prod hv1"},
		{"hv1", "p-prod", "10.77.0.8", false, "prod hv1 -> flat hv3"},
	}
	var errs []error
	for i, c := range checks {
		cmd := fmt.Sprintf("ip netns exec %s ping -c 3 -i 0.2 -W 1 %s", c.fromNS, c.to)
		if c.reach {
			cmd = fmt.Sprintf("ip netns exec %[1]s ping -c 1 -W 2 %[2]s >/dev/null || ip netns exec %[1]s ping -c 3 -W 2 %[2]s", c.fromNS, c.to)
		}
		_, code, err := s.hv(c.fromHV).Run(ctx, cmd+" >/dev/null 2>&1")
		if err != nil {
			return err
		}
		ok := code == 0
		s.Report.Isolation = append(s.Report.Isolation, IsolationCheck{What: c.what, WantReach: c.reach, Reached: ok})
		if ok != c.reach {
			errs = append(errs, fmt.Errorf("%s: reached %v, want %v", c.what, ok, c.reach))
		}
		if i == 3 {
			// A port that gets an ARP request for its address learns the
			// asker: hv2's prod port knows hv1's prod address (it
			// answered), its dev and flat ports must not (the requests
			// never reached them), before they ask themselves below.
			for ns, want := range map[string]bool{"p-prod": true, "p-dev": false, "p-flat": false} {
				out, err := run(ctx, s.hv("hv2"), "ip -n "+ns+" neigh show 10.77.0.1")
				if err != nil {
					return err
				}
				if got := strings.Contains(out, "lladdr"); got != want {
					errs = append(errs, fmt.Errorf("hv2 %s learned hv1's prod port from its ARP: %v, want %v (%s)", ns, got, want, strings.TrimSpace(out)))
				}
			}
		}
	}
	stop()
	obs.mu.Lock()
	defer obs.mu.Unlock()
	// On the wire between the hypervisors: ARP for prod's peer only tagged
	// 100, for dev's only 200, never untagged.
	for ip, want := range map[string]int{"10.77.0.2": 100, "10.77.0.5": 200} {
		got := obs.arps[ip]
		if got[want] == 0 {
			errs = append(errs, fmt.Errorf("observer on the VM segment saw no ARP request for %s tagged %d (saw %v)", ip, want, got))
		}
		for vid := range got {
			if vid != want {
				errs = append(errs, fmt.Errorf("ARP for %s left a hypervisor with VLAN %d (want only %d)", ip, vid, want))
			}
		}
	}
	// Frames the VMs sent themselves (if their firmware sent any) carry
	// their network's tag only.
	vmFrames := 0
	for _, n := range s.Report.NICs {
		for vid, c := range obs.tags[strings.ToLower(n.MAC)] {
			vmFrames += c
			want := n.VLAN
			if want == 1 {
				want = 0 // the native VLAN leaves the bond untagged
			}
			if vid != want {
				errs = append(errs, fmt.Errorf("VM %s NIC %s (%s) sent %d frames with VLAN %d on the wire", n.Domain, n.MAC, n.Network, c, vid))
			}
		}
	}
	s.Report.VMFramesSeen = vmFrames
	for _, c := range s.Report.Isolation {
		s.logf("  %-62s reached=%v (want %v)", c.What, c.Reached, c.WantReach)
	}
	s.logf("  on the VM segment: ARP for 10.77.0.2 seen with tags %v, for 10.77.0.5 with %v; %d frames from the VMs' own NICs, each with its network's tag", obs.arps["10.77.0.2"], obs.arps["10.77.0.5"], vmFrames)
	return errors.Join(errs...)
}
