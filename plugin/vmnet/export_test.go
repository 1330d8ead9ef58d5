package vmnet

// LoadTestSpec is testSpec for the tests on libvirt's test driver (package
// vmnet_test, which links the binding through libvirtconn).
var LoadTestSpec = testSpec
