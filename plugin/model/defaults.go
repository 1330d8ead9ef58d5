package model

// Defaults, all in one place. SetDefaults is the only code that fills them in.
const (
	DefaultMiimon          = 100
	DefaultNumGratARP      = 1
	DefaultPrimaryReselect = "always"
	DefaultMACPrefix       = "52:54:00"
	DefaultMTU             = 1500
	DefaultProfileName     = "modern"
	// DefaultUpdelayMs is the bond's updelay when the spec gives none:
	// after an adapter's link comes back, the bond waits this long before
	// making it active again (a failback to the primary), because a switch
	// port has carrier before it forwards. Measured in the kernel lab
	// (TestLabFailover and a sweep of updelays, miimon 100, UDP probes
	// every 10 ms, a veth cable whose switch end forwards only when
	// linkwatch runs: 4-863 ms after the plug in 104 plugs, bounded by
	// linkwatch's 1 s batching), failbacks that lost more than 30 probes:
	//   updelay 0:       19 of 24 (39-97 of ~95 probes; the bond is back
	//                    in 20-60 ms, fine only if the port was quicker);
	//   updelay 100-500: 21 of 30;
	//   updelay 600:     1 of 10 (31 lost: port forwarding after 727 ms);
	//   updelay 700-900: 0 of 30 (none lost at all);
	//   updelay 1000:    0 of 28 (none lost at all).
	// 700 cleared every plug seen, but the bond switches updelay plus up
	// to one miimon after the plug, so 1000 is the smallest multiple of
	// the default miimon that clears linkwatch's 1 s bound, not only the
	// plugs seen. Waiting costs nothing while the backup works (traffic
	// stays on it), and a bond with no adapter up uses the first one back
	// at once, whatever the updelay. Real switch ports take from
	// milliseconds (edge/portfast) to tens of seconds (spanning tree):
	// they set bond.updelayMs.
	DefaultUpdelayMs = 1000
	// DefaultArpValidate is the arp_validate of an ARP-monitored
	// infrastructure bond: "all". The hypervisors ARP for each other, so
	// without validation one host's probes (broadcast to every port)
	// would count as traffic on another's adapters and keep an adapter
	// whose path is dead "up" (the case the kernel documents for hosts
	// probing targets beyond a common switch). With "all" the active
	// adapter counts only ARP replies from its targets, and a backup only
	// its own bond's requests as the active adapter sent them (they reach
	// it when both adapters are in one L2 domain, as an active-backup
	// group needs anyway), so a backup whose path is dead is not chosen.
	// "active" would let a backup look alive on any frame.
	DefaultArpValidate = "all"
	// DefaultArpValidateNoIP is the arp_validate of an ARP-monitored bond
	// of any other group: "filter" (no validation; only ARP frames count
	// as traffic). gallium-net puts no IP on those groups' bridges, so the
	// kernel sends the probes with source 0.0.0.0 and no answer could
	// ever validate: validation would take every adapter down.
	DefaultArpValidateNoIP = "filter"
)

// DefaultUpdelay returns the default updelay for a bond with the given
// miimon: DefaultUpdelayMs rounded up to a multiple of miimon, since the
// kernel counts updelay in miimon intervals (and rounds other values down).
func DefaultUpdelay(miimon int) int {
	if miimon <= 0 {
		return DefaultUpdelayMs
	}
	return (DefaultUpdelayMs + miimon - 1) / miimon * miimon
}

// BuiltinProfiles are the hardware profiles every cluster has; a spec may add
// more or override these by name.
var BuiltinProfiles = []HardwareProfile{
	{Name: "modern", NICModel: "virtio"},
	{Name: "legacy", NICModel: "e1000"},
}

// SetDefaults fills every unset optional field with its default. It is
// idempotent and never overrides a value the spec gives.
func SetDefaults(s *Spec) {
	if s.Cluster.MACPrefix == "" {
		s.Cluster.MACPrefix = DefaultMACPrefix
	}
	if s.Cluster.MTU == 0 {
		s.Cluster.MTU = DefaultMTU
	}
	for _, b := range BuiltinProfiles {
		if s.Profile(b.Name) == nil {
			s.HardwareProfiles = append(s.HardwareProfiles, b)
		}
	}
	if s.Cluster.DefaultProfile == "" {
		s.Cluster.DefaultProfile = DefaultProfileName
	}
	for i := range s.AdapterGroups {
		g := &s.AdapterGroups[i]
		if g.Bond.ARPMonitor() {
			// Miimon and the miimon-based delays stay unset: the kernel
			// runs one monitor (validate refuses them with ARP).
			if g.Bond.ArpValidate == "" {
				g.Bond.ArpValidate = DefaultArpValidateNoIP
				if g.Infrastructure {
					g.Bond.ArpValidate = DefaultArpValidate
				}
			}
		} else if g.Bond.Miimon == 0 {
			g.Bond.Miimon = DefaultMiimon
		}
		if g.Bond.UpdelayMs == nil && !g.Bond.ARPMonitor() {
			d := DefaultUpdelay(g.Bond.Miimon)
			g.Bond.UpdelayMs = &d
		}
		if g.Bond.NumGratARP == 0 {
			g.Bond.NumGratARP = DefaultNumGratARP
		}
		if g.Bond.PrimaryReselect == "" {
			g.Bond.PrimaryReselect = DefaultPrimaryReselect
		}
		if g.Bond.Primary == "" {
			// The per-hypervisor fallback (first adapter) lives in PrimaryOn;
			// a single name is only set here when every hypervisor agrees.
			first := ""
			same := true
			for _, ads := range g.Adapters {
				if len(ads) == 0 {
					continue
				}
				if first == "" {
					first = ads[0]
				} else if ads[0] != first {
					same = false
				}
			}
			if same {
				g.Bond.Primary = first
			}
		}
		// An out-of-range cluster MTU is not copied: validate reports it
		// once, at cluster.mtu, not again for every group that inherits it.
		if g.MTU == 0 && IsMTU(s.Cluster.MTU) == nil {
			g.MTU = s.Cluster.MTU
		}
	}
}
