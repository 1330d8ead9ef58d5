package plugin

// Defaults, all in one place. SetDefaults is the only code that fills them in.
const (
	DefaultMiimon          = 100
	DefaultNumGratARP      = 1
	DefaultPrimaryReselect = "always"
	DefaultMACPrefix       = "52:54:00"
	DefaultMTU             = 1500
	DefaultProfileName     = "modern"
)

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
		if g.Bond.Miimon == 0 {
			g.Bond.Miimon = DefaultMiimon
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
		if g.MTU == 0 {
			g.MTU = s.Cluster.MTU
		}
	}
}
