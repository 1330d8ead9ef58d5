package model

// Rules on hardware profiles.

// checkProfiles: every hardware profile has a plain, unique name and a
// known NIC model.
func checkProfiles(v *validator) {
	for i := range v.s.HardwareProfiles {
		p := &v.s.HardwareProfiles[i]
		path := profilePath(p, i)
		if first := v.profileByName[p.Name]; first != p && p.Name != "" {
			v.errorf(path, "hardware profile name %s is used twice: give every profile its own name", show(p.Name))
			continue
		}
		if err := IsObjectName(p.Name); err != nil {
			v.errorf(path+".name", "hardware profile %v", err)
		}
		if err := IsNICModel(p.NICModel); err != nil {
			v.errorf(path+".nicModel", "%v", err)
		}
	}
}

// checkDefaultProfile: the default profile names an existing profile.
func checkDefaultProfile(v *validator) {
	name := v.s.Cluster.DefaultProfile
	if name == "" || v.profileByName[name] != nil {
		return
	}
	ps := v.s.HardwareProfiles
	v.errorf("cluster.defaultProfile", "default profile %s is not a hardware profile: use one of %s, or add it under hardwareProfiles",
		show(name), listFunc(len(ps), func(i int) string { return ps[i].Name }))
}
