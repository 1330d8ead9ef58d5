package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gallium/gallium-net/hooks/internal/records"
	"github.com/gallium/gallium-net/test/testenv"
)

// TestParallelHookInvocations runs whole hook invocations (parse, snapshot,
// lock, tap programming, records) as libvirt does when it starts many
// domains at once: 50 domains with 4 NICs each start and stop, 100 rounds,
// all sharing one state directory. No record may be lost or corrupt and no
// invocation may fail or hang (the lock wait is bounded).
func TestParallelHookInvocations(t *testing.T) {
	workers, rounds := 50, 100
	if testing.Short() || testenv.InLab() {
		rounds = 10 // the lab's emulated CPU is slow; the unit tier runs all 100
	}
	shared := testEnv(t, nil)
	// The bound is for hung hooks; here 50 share the lock on a busy machine.
	shared.LockTimeout = time.Minute
	// Records on tmpfs, as /run is in production (thousands of writes).
	if d, err := os.MkdirTemp("/dev/shm", "gallium-hook-test-"); err == nil {
		t.Cleanup(func() { os.RemoveAll(d) })
		shared.StateDir = d
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := shared
			e.Kernel = newFakeKernel() // each domain its own taps
			name := fmt.Sprintf("vm%02d", w)
			uuid := fmt.Sprintf("00000000-0000-0000-0000-%012d", w)
			// Distinct MACs per domain: the MAC-conflict check must not fire.
			xml := strings.ReplaceAll(domainXML(name, uuid, true, 4, "flat"), "52:54:00:00:00:", fmt.Sprintf("52:54:00:%02x:00:", w))
			for i := range 4 {
				e.Kernel.(*fakeKernel).links[fmt.Sprintf("vnet%d", i)].MAC = nil
			}
			for r := range rounds {
				if code, _, errOut := runHook(e, "qemu.d", name, "start", "begin", xml); code != 0 {
					errs <- fmt.Errorf("%s round %d: start: %s", name, r, errOut)
					return
				}
				if r == rounds-1 {
					return // stays running
				}
				if code, _, errOut := runHook(e, "qemu.d", name, "stopped", "end", xml); code != 0 {
					errs <- fmt.Errorf("%s round %d: stopped: %s", name, r, errOut)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st, err := records.Store{Dir: shared.StateDir}.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Domains) != workers {
		t.Fatalf("%d domains recorded, want %d", len(st.Domains), workers)
	}
	for _, d := range st.Domains {
		if !d.Running || len(d.NICs) != 4 {
			t.Errorf("domain %s: running=%v nics=%d", d.Name, d.Running, len(d.NICs))
		}
	}
}
