package netsetup

// The kernel lab for confirm_lab_test.go, which is in the external test
// package netsetup_test (netsetup/confirm imports netsetup).
var (
	NewLab     = newLab
	LabSpec    = labSpec
	LabDesired = labDesired
	Observe    = observe
)
