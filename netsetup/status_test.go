package netsetup

import "testing"

func TestStatusShowsActiveAdapterAndVLANs(t *testing.T) {
	f, _ := converged(t)
	hs := desiredExample(t, "hv1")
	f.SetCarrier("eno3", false)
	obs, _ := f.Observe()
	st := Status(hs, obs, func(name string) AdapterFacts { return AdapterFacts{Name: name, SpeedMbps: -1} })
	if !st.Converged || len(st.Groups) != 2 {
		t.Fatalf("status: %+v", st)
	}
	vm := st.Groups[1]
	if vm.ActiveAdapter != "eno4" || !vm.Adapters[1].Active || vm.Adapters[0].Carrier {
		t.Errorf("eno3 has no carrier, so eno4 must be active: %+v", vm)
	}
	if len(vm.VLANs) != 3 || vm.VLANs[1].VID != 100 || !vm.VLANFiltering {
		t.Errorf("VLANs: %+v", vm.VLANs)
	}
	if st.Groups[0].Addrs[0] != "192.168.1.101/24" {
		t.Errorf("infra addrs: %v", st.Groups[0].Addrs)
	}
}
