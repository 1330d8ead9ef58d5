package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gallium/gallium-net/test/lab/internal/proto"
)

// DefaultCommandTimeout bounds a command whose context has no deadline.
const DefaultCommandTimeout = 10 * time.Minute

// VM is a running lab VM.
type VM struct {
	Name string
	// BootTime is from starting QEMU to the agent's first answer.
	BootTime time.Duration

	cfg Config
	lab *Lab
	dir string

	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error

	conn   net.Conn
	wmu    sync.Mutex
	mu     sync.Mutex
	calls  map[uint64]*call
	nextID uint64
	pong   chan uint64
	dead   error // agent connection lost

	qmp   *qmp
	nics  map[string]nicState
	close sync.Once
}

type nicState struct {
	NIC
	sock string
	seg  *Segment
}

type call struct {
	out  io.Writer
	done chan proto.Msg
}

// Boot starts a VM and waits until its agent answers, then names its NICs
// and mounts its shares. On error nothing is left running.
func (l *Lab) Boot(ctx context.Context, cfg Config) (vm *VM, err error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("lab: closed")
	}
	if l.vms[cfg.Name] != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("lab: a VM named %s is running", cfg.Name)
	}
	ldir, err := l.labDir()
	if err != nil {
		l.mu.Unlock()
		return nil, err
	}
	vm = &VM{Name: cfg.Name, cfg: cfg, lab: l, dir: filepath.Join(ldir, cfg.Name), exited: make(chan struct{}),
		calls: map[uint64]*call{}, pong: make(chan uint64, 16), nics: map[string]nicState{}}
	l.vms[cfg.Name] = vm
	l.mu.Unlock()
	defer func() {
		if err != nil {
			vm.Close()
			vm = nil
		}
	}()
	if err := os.MkdirAll(vm.dir, 0o755); err != nil {
		return vm, err
	}
	a := l.art
	initrd := a.Initramfs.Path
	if cfg.Initrd != "" {
		initrd = cfg.Initrd
	}
	args := []string{
		"-name", cfg.Name,
		"-accel", accel(),
		"-M", "q35",
		"-cpu", "max",
		"-m", fmt.Sprint(cfg.MemMB),
		"-smp", fmt.Sprint(cfg.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-kernel", a.Kernel.path(a.Kernel.Image),
		"-initrd", initrd,
		"-append", strings.TrimSpace("console=ttyS0 panic=-1 quiet gallium.vm=" + cfg.Name + " " + cfg.Cmdline),
		"-chardev", "file,id=con,path=" + vm.path("console.log"),
		"-serial", "chardev:con",
		"-qmp", "unix:" + vm.path("qmp.sock") + ",server=on,wait=off",
		"-device", "virtio-serial-pci,id=vser0",
		"-chardev", "socket,id=agent,path=" + vm.path("agent.sock") + ",server=on,wait=off",
		"-device", "virtserialport,bus=vser0.0,chardev=agent,name=" + proto.PortName,
	}
	// qboot boots faster than SeaBIOS, but it cannot boot the PVH kernel
	// again after a reset once a NIC's link was toggled with set_link (the
	// vCPU spins in the kernel's 32-bit entry, nothing on the console):
	// VMs that reboot get SeaBIOS (TestLabResetAfterCablePull).
	if a.BIOS != "" && !cfg.Reboots {
		args = append(args, "-bios", a.BIOS)
	}
	if !cfg.Reboots {
		args = append(args, "-no-reboot")
	}
	for i, n := range cfg.NICs {
		st := nicState{NIC: n, sock: vm.path(fmt.Sprintf("nic%d.sock", i))}
		os.Remove(st.sock)
		nd := "nd-" + n.ID
		if n.Segment != "" {
			l.mu.Lock()
			st.seg, err = l.attach(n.Segment, cfg.Name+"/"+n.ID, st.sock)
			l.mu.Unlock()
			if err != nil {
				return vm, err
			}
			vm.nics[n.ID] = st
			args = append(args, "-netdev", fmt.Sprintf("dgram,id=%s,local.type=unix,local.path=%s,remote.type=unix,remote.path=%s", nd, st.sock, st.seg.path))
		} else {
			vm.nics[n.ID] = st
			args = append(args, "-netdev", "hubport,id="+nd+",hubid=9"+fmt.Sprint(i))
		}
		args = append(args, "-device", fmt.Sprintf("virtio-net-pci,netdev=%s,id=%s,mac=%s,addr=0x%x", nd, n.ID, n.MAC, 0x10+i))
	}
	for i, d := range cfg.Disks {
		opt := fmt.Sprintf("file=%s,if=none,id=disk%d,format=%s", d.Path, i, d.Format)
		if d.Snapshot {
			// The overlay is thrown away: flushes need not reach it.
			opt += ",snapshot=on,cache=unsafe"
		}
		if d.ReadOnly {
			opt += ",readonly=on"
		}
		args = append(args, "-drive", opt, "-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d", i))
	}
	for i, s := range cfg.Shares {
		opt := fmt.Sprintf("local,path=%s,mount_tag=share%d,security_model=none,multidevs=remap", s.Host, i)
		if s.ReadOnly {
			opt += ",readonly=on"
		}
		args = append(args, "-virtfs", opt)
	}
	os.WriteFile(vm.path("qemu.cmdline"), []byte(a.QEMU+" "+strings.Join(args, " ")+"\n"), 0o644)

	start := time.Now()
	if err := vm.startQEMU(a.QEMU, args); err != nil {
		return vm, err
	}
	bctx, cancel := context.WithTimeout(ctx, cfg.BootTimeout)
	defer cancel()
	if err := vm.connectAgent(bctx); err != nil {
		return vm, fmt.Errorf("lab: %s: boot: %w%s", cfg.Name, err, vm.consoleTail(25))
	}
	vm.BootTime = time.Since(start)
	if vm.qmp, err = dialQMP(vm.path("qmp.sock"), 30*time.Second); err != nil {
		return vm, fmt.Errorf("lab: %s: %w", cfg.Name, err)
	}
	if err := vm.setup(bctx); err != nil {
		return vm, fmt.Errorf("lab: %s: setup: %w", cfg.Name, err)
	}
	return vm, nil
}

func accel() string {
	if a := os.Getenv("GALLIUM_LAB_ACCEL"); a != "" {
		return a
	}
	return "tcg"
}

func (vm *VM) path(name string) string { return filepath.Join(vm.dir, name) }

// startQEMU starts QEMU from a goroutine that keeps its OS thread until
// QEMU exits: Pdeathsig fires when the thread that forked dies, so QEMU is
// killed when the test process dies, however it dies.
func (vm *VM) startQEMU(bin string, args []string) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread exits with this goroutine, after QEMU.
		cmd := exec.Command(bin, args...)
		cmd.Stdin = nil
		logFile, err := os.Create(vm.path("qemu.log"))
		if err != nil {
			started <- err
			close(vm.exited)
			return
		}
		defer logFile.Close()
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("lab: start qemu: %w", err)
			close(vm.exited)
			return
		}
		vm.cmd = cmd
		started <- nil
		vm.exitErr = cmd.Wait()
		close(vm.exited)
	}()
	return <-started
}

func (vm *VM) qemuDied() error {
	b, _ := os.ReadFile(vm.path("qemu.log"))
	return fmt.Errorf("qemu exited (%v): %s", vm.exitErr, tail(b, 600))
}

// connectAgent connects to the agent's socket and pings until it answers.
func (vm *VM) connectAgent(ctx context.Context) error {
	for {
		c, err := net.DialTimeout("unix", vm.path("agent.sock"), time.Second)
		if err == nil {
			vm.conn = c
			break
		}
		select {
		case <-vm.exited:
			return vm.qemuDied()
		case <-ctx.Done():
			return fmt.Errorf("agent socket: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	go vm.readLoop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for id := uint64(1 << 62); ; id++ {
		if err := vm.send(proto.Msg{Op: proto.OpPing, ID: id}); err != nil {
			return err
		}
		select {
		case <-vm.pong:
			return nil
		case <-vm.exited:
			return vm.qemuDied()
		case <-ctx.Done():
			return fmt.Errorf("no answer from the guest agent: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func (vm *VM) send(m proto.Msg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	vm.wmu.Lock()
	defer vm.wmu.Unlock()
	vm.conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
	_, err = vm.conn.Write(append(b, '\n'))
	return err
}

func (vm *VM) readLoop() {
	r := bufio.NewReaderSize(vm.conn, 256<<10)
	var err error
	for {
		var line []byte
		line, err = r.ReadBytes('\n')
		if err != nil {
			break
		}
		var m proto.Msg
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		switch m.Op {
		case proto.OpPong:
			select {
			case vm.pong <- m.ID:
			default:
			}
		case proto.OpLog:
			logf("%s agent: %s", vm.Name, m.Err)
		case proto.OpOut:
			vm.mu.Lock()
			c := vm.calls[m.ID]
			vm.mu.Unlock()
			if c != nil && c.out != nil {
				c.out.Write(m.Data)
			}
		case proto.OpExit:
			vm.mu.Lock()
			c := vm.calls[m.ID]
			delete(vm.calls, m.ID)
			vm.mu.Unlock()
			if c != nil {
				c.done <- m
			}
		}
	}
	vm.mu.Lock()
	vm.dead = fmt.Errorf("agent connection lost: %v", err)
	calls := vm.calls
	vm.calls = map[uint64]*call{}
	vm.mu.Unlock()
	for id, c := range calls {
		c.done <- proto.Msg{Op: proto.OpExit, ID: id, Code: -1, Err: "agent connection lost"}
	}
}

// ExecOptions are the optional parts of a command.
type ExecOptions struct {
	Env []string  // KEY=VALUE, added to the agent's (PATH, HOME, GALLIUM_LAB=1)
	Dir string    // working directory (default /)
	Out io.Writer // combined stdout and stderr, as it comes
}

// Exec runs cmd with /bin/sh -c in the guest as root and returns its exit
// code. err is set only when the command could not run to its end: the
// context ended (the command is then killed), the VM died or the agent is
// gone. Without a deadline in ctx, DefaultCommandTimeout applies.
func (vm *VM) Exec(ctx context.Context, cmd string, opt ExecOptions) (int, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCommandTimeout)
		defer cancel()
	}
	c := &call{out: opt.Out, done: make(chan proto.Msg, 1)}
	vm.mu.Lock()
	if vm.dead != nil {
		err := vm.dead
		vm.mu.Unlock()
		return -1, fmt.Errorf("lab: %s: %w", vm.Name, err)
	}
	vm.nextID++
	id := vm.nextID
	vm.calls[id] = c
	vm.mu.Unlock()
	if err := vm.send(proto.Msg{Op: proto.OpRun, ID: id, Cmd: cmd, Env: opt.Env, Dir: opt.Dir}); err != nil {
		vm.mu.Lock()
		delete(vm.calls, id)
		vm.mu.Unlock()
		return -1, fmt.Errorf("lab: %s: send: %w", vm.Name, err)
	}
	select {
	case m := <-c.done:
		if m.Code == -1 && m.Err != "" {
			return -1, fmt.Errorf("lab: %s: %s", vm.Name, m.Err)
		}
		return m.Code, nil
	case <-ctx.Done():
		vm.send(proto.Msg{Op: proto.OpKill, ID: id})
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
		}
		return -1, fmt.Errorf("lab: %s: %q: %w", vm.Name, shorten(cmd), ctx.Err())
	case <-vm.exited:
		return -1, fmt.Errorf("lab: %s: VM died during %q%s", vm.Name, shorten(cmd), vm.consoleTail(20))
	}
}

// Run runs cmd in the guest and returns its combined output and exit code.
func (vm *VM) Run(ctx context.Context, cmd string) (string, int, error) {
	var buf syncBuffer
	code, err := vm.Exec(ctx, cmd, ExecOptions{Out: &buf})
	return buf.String(), code, err
}

// MustRun runs cmd and returns its output; a non-zero exit is an error
// that includes the output.
func (vm *VM) MustRun(ctx context.Context, cmd string) (string, error) {
	out, code, err := vm.Run(ctx, cmd)
	if err != nil {
		return out, err
	}
	if code != 0 {
		return out, fmt.Errorf("%s: %q exited %d: %s", vm.Name, shorten(cmd), code, tail([]byte(out), 2000))
	}
	return out, nil
}

// Put writes a file into the guest (parents are created).
func (vm *VM) Put(ctx context.Context, path string, data []byte, mode os.FileMode) error {
	c := &call{done: make(chan proto.Msg, 1)}
	vm.mu.Lock()
	vm.nextID++
	id := vm.nextID
	vm.calls[id] = c
	vm.mu.Unlock()
	if err := vm.send(proto.Msg{Op: proto.OpPut, ID: id, Path: path, Data: data, Mode: uint32(mode.Perm())}); err != nil {
		return err
	}
	select {
	case m := <-c.done:
		if m.Code != 0 {
			return fmt.Errorf("lab: %s: put %s: %s", vm.Name, path, m.Err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-vm.exited:
		return fmt.Errorf("lab: %s: VM died", vm.Name)
	}
}

// SetLink plugs (up) or pulls (down) the virtual cable of NIC id: QEMU's
// set_link, so the guest sees carrier change, and the segment's switch
// port goes down with it (its learned MACs are flushed, as a real switch
// does on link loss).
func (vm *VM) SetLink(id string, up bool) error {
	st, ok := vm.nics[id]
	if !ok {
		return fmt.Errorf("lab: %s: no NIC %q", vm.Name, id)
	}
	if st.seg != nil && !up {
		st.seg.setPortUp(st.sock, false)
	}
	if _, err := vm.qmp.execute("set_link", map[string]any{"name": id, "up": up}, 30*time.Second); err != nil {
		return fmt.Errorf("lab: %s: %w", vm.Name, err)
	}
	if st.seg != nil && up {
		st.seg.setPortUp(st.sock, true)
	}
	return nil
}

// SetForwarding wedges (on false) or frees the switch port of NIC id: a
// dead path behind a live link. The guest keeps its carrier (no QMP
// set_link), but the segment's switch drops every frame to and from the
// port and keeps the MACs it learned there, as a hung switch port or a
// switch whose uplink is gone does.
func (vm *VM) SetForwarding(id string, on bool) error {
	st, ok := vm.nics[id]
	if !ok {
		return fmt.Errorf("lab: %s: no NIC %q", vm.Name, id)
	}
	if st.seg == nil {
		return fmt.Errorf("lab: %s: NIC %q is on no segment", vm.Name, id)
	}
	st.seg.setPortForwarding(st.sock, on)
	return nil
}

// NICs returns the VM's NICs with their defaults filled in.
func (vm *VM) NICs() []NIC { return append([]NIC(nil), vm.cfg.NICs...) }

// Dir is the VM's directory on the host (console.log, qemu.log, sockets).
func (vm *VM) Dir() string { return vm.dir }

// Console returns what the guest printed on its serial console.
func (vm *VM) Console() string {
	b, _ := os.ReadFile(vm.path("console.log"))
	return string(b)
}

func (vm *VM) consoleTail(lines int) string {
	s := strings.TrimRight(vm.Console(), "\n")
	if s == "" {
		return "\n(console empty)"
	}
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return "\nconsole of " + vm.Name + ":\n  " + strings.Join(ls, "\n  ")
}

// Close kills QEMU and removes the VM's files (unless GALLIUM_LAB_KEEP=1).
// It is safe to call more than once.
func (vm *VM) Close() error {
	vm.close.Do(func() {
		if vm.cmd != nil && vm.cmd.Process != nil {
			vm.cmd.Process.Kill()
			select {
			case <-vm.exited:
			case <-time.After(30 * time.Second):
				logf("%s: qemu (pid %d) did not exit after SIGKILL", vm.Name, vm.cmd.Process.Pid)
			}
		}
		if vm.conn != nil {
			vm.conn.Close()
		}
		if vm.qmp != nil {
			vm.qmp.close()
		}
		for _, st := range vm.nics {
			if st.seg != nil {
				vm.lab.detach(st.Segment, st.sock)
			}
		}
		vm.lab.mu.Lock()
		if vm.lab.vms[vm.Name] == vm {
			delete(vm.lab.vms, vm.Name)
		}
		vm.lab.mu.Unlock()
		if os.Getenv("GALLIUM_LAB_KEEP") != "1" {
			os.RemoveAll(vm.dir)
		} else {
			logf("%s: kept %s", vm.Name, vm.dir)
		}
		vm.lab.detach("", "") // removes the lab dir when empty
	})
	return nil
}

// setup names the NICs by MAC (two passes, so that no name is taken
// twice), sets the hostname and mounts the shares.
func (vm *VM) setup(ctx context.Context) error {
	var sb strings.Builder
	sb.WriteString("set -e\nhostname " + vm.Name + "\n")
	if vm.cfg.GuestNamesNICs {
		vm.waitNamesScript(&sb)
	} else {
		vm.renameScript(&sb)
	}
	vm.mountScript(&sb)
	out, err := vm.MustRun(ctx, sb.String())
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// renameScript names the NICs by MAC (NIC.Guest), through temporary names
// so that two NICs can swap theirs.
func (vm *VM) renameScript(sb *strings.Builder) {
	sb.WriteString(`byaddr() { for d in /sys/class/net/*; do [ "$(cat $d/address)" = "$1" ] && { basename $d; return 0; }; done; return 1; }
waitaddr() { i=0; until byaddr "$1" >/dev/null; do i=$((i+1)); [ $i -lt 200 ] || { echo "no NIC with MAC $1" >&2; return 1; }; sleep 0.05; done; }
`)
	for i, n := range vm.cfg.NICs {
		fmt.Fprintf(sb, "waitaddr %s\nip link set dev \"$(byaddr %s)\" name labtmp%d\n", n.MAC, n.MAC, i)
	}
	for i, n := range vm.cfg.NICs {
		fmt.Fprintf(sb, "ip link set dev labtmp%d name %s\n", i, n.Guest)
	}
}

// waitNamesScript waits up to 60 s for each NIC to carry its Guest name
// and MAC, named by the guest itself.
func (vm *VM) waitNamesScript(sb *strings.Builder) {
	for _, n := range vm.cfg.NICs {
		fmt.Fprintf(sb, "i=0; until [ \"$(cat /sys/class/net/%s/address 2>/dev/null)\" = %s ]; do i=$((i+1)); [ $i -lt 600 ] || { echo \"no NIC %s with MAC %s after 60 s:\"; ip -br link; exit 1; }; sleep 0.1; done\n",
			n.Guest, n.MAC, n.Guest, n.MAC)
	}
}

// mountScript mounts the shares.
func (vm *VM) mountScript(sb *strings.Builder) {
	for i, s := range vm.cfg.Shares {
		o := "trans=virtio,version=9p2000.L,msize=512000,cache=loose"
		if s.ReadOnly {
			o += ",ro"
		}
		fmt.Fprintf(sb, "mkdir -p '%s'\nmountpoint -q '%s' || mount -t 9p -o %s share%d '%s'\n", s.Guest, s.Guest, o, i, s.Guest)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func shorten(s string) string {
	s = strings.ReplaceAll(s, "\n", "; ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// BootID is the guest kernel's boot ID, which changes at every boot: the
// way to tell that a reboot has happened.
func (vm *VM) BootID(ctx context.Context) (string, error) {
	out, err := vm.MustRun(ctx, "cat /proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(out), err
}

// Reset resets the VM as its reset button would (QMP system_reset): the
// guest starts again at once, without shutting down. The VM must have been
// booted with Config.Reboots, else QEMU exits.
func (vm *VM) Reset() error {
	if !vm.cfg.Reboots {
		return fmt.Errorf("lab: %s: reset: booted without Config.Reboots, QEMU would exit", vm.Name)
	}
	if _, err := vm.qmp.execute("system_reset", nil, 30*time.Second); err != nil {
		return fmt.Errorf("lab: %s: %w", vm.Name, err)
	}
	return nil
}

// cpuState is where the guest's vCPU is (QEMU's "info registers", first
// lines): it tells firmware, the kernel's entry and a running system apart
// when a boot prints nothing on the console.
func (vm *VM) cpuState() string {
	raw, err := vm.qmp.execute("human-monitor-command", map[string]any{"command-line": "info registers"}, 10*time.Second)
	if err != nil {
		return "\n(no CPU state: " + err.Error() + ")"
	}
	var out string
	if json.Unmarshal(raw, &out) != nil {
		out = string(raw)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) > 7 {
		lines = lines[:7]
	}
	return "\nCPU state (QEMU info registers):\n  " + strings.Join(lines, "\n  ")
}

// AwaitReboot waits until the guest's agent answers from a boot other than
// oldID (see BootID), then mounts the shares again. The NICs keep the
// names the guest's own boot gives them. Commands that were running when
// the guest went down never return: give them a deadline.
//
// The connection to the agent's socket stays: QEMU keeps it across a guest
// reboot or reset, and the new boot's agent answers on it.
func (vm *VM) AwaitReboot(ctx context.Context, oldID string) error {
	for {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		id, err := vm.BootID(pctx)
		cancel()
		if err == nil && id != "" && id != oldID {
			break
		}
		select {
		case <-vm.exited:
			return fmt.Errorf("lab: %s: reboot: %w", vm.Name, vm.qemuDied())
		case <-ctx.Done():
			return fmt.Errorf("lab: %s: no new boot after the reboot: %w%s%s", vm.Name, ctx.Err(), vm.consoleTail(20), vm.cpuState())
		case <-time.After(500 * time.Millisecond):
		}
	}
	var sb strings.Builder
	sb.WriteString("set -e\n")
	vm.mountScript(&sb)
	if out, err := vm.MustRun(ctx, sb.String()); err != nil {
		return fmt.Errorf("lab: %s: after the reboot: %w: %s", vm.Name, err, out)
	}
	return nil
}
