package lab_test

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/gallium/gallium-net/test/lab"
)

// TestMain closes every lab VM on the way out, also when the run is
// interrupted (QEMU would die with the process anyway: Pdeathsig; this
// also removes the lab's sockets).
func TestMain(m *testing.M) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "lab: %v: closing the lab VMs\n", s)
		lab.CloseAll()
		os.Exit(1)
	}()
	code := m.Run()
	lab.CloseAll()
	os.Exit(code)
}
