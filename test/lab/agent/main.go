// Command gallium-lab-agent is the kernel lab's guest agent. The lab's
// /init execs it as PID 1 of the lab VM. It talks to the host over the
// virtio-serial port named proto.PortName, one JSON message per line (see
// test/lab/internal/proto), and runs the host's commands as root with
// /bin/sh -c, streaming their combined output back. Several commands may run
// at once. It is built static (CGO_ENABLED=0) by package lab and put into the
// lab's initramfs.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gallium/gallium-net/test/lab/internal/proto"
)

var baseEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"TMPDIR=/tmp",
	"TERM=dumb",
	"GALLIUM_LAB=1",
}

// shellPrelude makes the shell run iproute2's ip, bridge and tc (which
// know bonds and bridge VLANs) instead of busybox's applets of the same
// names: Debian's busybox-static prefers its applets to $PATH, but not to
// shell functions.
var shellPrelude string

func init() {
	for _, t := range []string{"ip", "bridge", "tc"} {
		if _, err := os.Stat("/usr/sbin/" + t); err == nil {
			shellPrelude += t + "() { /usr/sbin/" + t + " \"$@\"; }\n"
		}
	}
}

type agent struct {
	port *os.File
	wmu  sync.Mutex

	mu    sync.Mutex
	procs map[uint64]*os.Process
}

func main() {
	logf("agent starting (pid %d)", os.Getpid())
	dev, err := findPort(30 * time.Second)
	if err != nil {
		logf("%v", err)
		// As PID 1, exiting panics the kernel; panic=-1 and -no-reboot then
		// end QEMU, which the host reports with the console log.
		os.Exit(1)
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		logf("open %s: %v", dev, err)
		os.Exit(1)
	}
	logf("agent ready on %s", dev)
	a := &agent{port: f, procs: map[uint64]*os.Process{}}
	self = a
	if os.Getpid() == 1 {
		go reapOrphans()
	}
	a.serve()
}

func logf(format string, args ...any) {
	msg := fmt.Sprintf("gallium-lab-agent: "+format+"\n", args...)
	if c, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		c.WriteString(msg)
		c.Close()
		return
	}
	os.Stderr.WriteString(msg)
}

// findPort waits for the virtio-serial port named proto.PortName.
func findPort(timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err == nil && strings.TrimSpace(string(b)) == proto.PortName {
				dev := "/dev/" + filepath.Base(filepath.Dir(n))
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio-serial port named %s after %s", proto.PortName, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serve reads requests forever. A read of 0 bytes means the host side is not
// connected (yet, or any more): wait and read again.
func (a *agent) serve() {
	var line []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := a.port.Read(buf)
		if n > 0 {
			data := buf[:n]
			for {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					line = append(line, data...)
					break
				}
				line = append(line, data[:i]...)
				a.handle(line)
				line = line[:0]
				data = data[i+1:]
			}
			if len(line) > proto.MaxLine {
				logf("request line too long, dropped")
				line = nil
			}
		}
		if n == 0 || err != nil {
			if err != nil && !errors.Is(err, io.EOF) {
				logf("read: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (a *agent) send(m proto.Msg) {
	b, err := json.Marshal(m)
	if err != nil {
		logf("marshal: %v", err)
		return
	}
	b = append(b, '\n')
	a.wmu.Lock()
	defer a.wmu.Unlock()
	for len(b) > 0 {
		n, err := a.port.Write(b)
		b = b[n:]
		if err != nil {
			if errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.EAGAIN) {
				continue
			}
			logf("write: %v", err)
			return
		}
	}
}

func (a *agent) handle(line []byte) {
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	var m proto.Msg
	if err := json.Unmarshal(line, &m); err != nil {
		logf("bad request: %v", err)
		return
	}
	switch m.Op {
	case proto.OpPing:
		a.send(proto.Msg{Op: proto.OpPong, ID: m.ID})
	case proto.OpRun:
		go a.run(m)
	case proto.OpKill:
		a.mu.Lock()
		p := a.procs[m.ID]
		a.mu.Unlock()
		if p != nil {
			syscall.Kill(-p.Pid, syscall.SIGKILL)
		}
	case proto.OpPut:
		go a.put(m)
	default:
		a.send(proto.Msg{Op: proto.OpExit, ID: m.ID, Code: -1, Err: "unknown op " + m.Op})
	}
}

func (a *agent) put(m proto.Msg) {
	mode := os.FileMode(m.Mode)
	if mode == 0 {
		mode = 0o644
	}
	err := os.MkdirAll(filepath.Dir(m.Path), 0o755)
	if err == nil {
		err = os.WriteFile(m.Path, m.Data, mode)
	}
	if err == nil {
		err = os.Chmod(m.Path, mode)
	}
	if err != nil {
		a.send(proto.Msg{Op: proto.OpExit, ID: m.ID, Code: 1, Err: err.Error()})
		return
	}
	a.send(proto.Msg{Op: proto.OpExit, ID: m.ID})
}

func (a *agent) run(m proto.Msg) {
	pr, pw, err := os.Pipe()
	if err != nil {
		a.send(proto.Msg{Op: proto.OpExit, ID: m.ID, Code: -1, Err: err.Error()})
		return
	}
	cmd := exec.Command("/bin/sh", "-c", shellPrelude+m.Cmd)
	cmd.Env = append(append([]string{}, baseEnv...), m.Env...)
	cmd.Dir = m.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Stdout = pw
	cmd.Stderr = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Start and record under the lock, so that the orphan reaper never
	// mistakes a command of ours for an orphan.
	a.mu.Lock()
	err = cmd.Start()
	if err == nil {
		a.procs[m.ID] = cmd.Process
	}
	a.mu.Unlock()
	pw.Close()
	if err != nil {
		pr.Close()
		a.send(proto.Msg{Op: proto.OpExit, ID: m.ID, Code: -1, Err: err.Error()})
		return
	}

	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, 32<<10)
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				a.send(proto.Msg{Op: proto.OpOut, ID: m.ID, Data: append([]byte(nil), buf[:n]...)})
			}
			if err != nil {
				return
			}
		}
	}()
	werr := cmd.Wait()
	// A background child that inherited the pipe keeps it open: read what
	// the command itself wrote, then stop waiting for EOF.
	pr.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	<-copied
	pr.Close()
	a.mu.Lock()
	delete(a.procs, m.ID)
	a.mu.Unlock()

	res := proto.Msg{Op: proto.OpExit, ID: m.ID}
	if werr != nil {
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			res.Code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				res.Err = "killed by " + ws.Signal().String()
			}
		} else {
			res.Code = -1
			res.Err = werr.Error()
		}
	}
	a.send(res)
}

// reapOrphans collects zombies that PID 1 inherits (children of commands
// that exited before them). It only waits for processes that are not the
// agent's own commands, which os/exec waits for itself.
func reapOrphans() {
	for {
		time.Sleep(2 * time.Second)
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			var pid int
			if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid <= 1 {
				continue
			}
			st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil {
				continue
			}
			// pid (comm) S ppid ...
			s := string(st)
			i := strings.LastIndexByte(s, ')')
			if i < 0 || i+4 > len(s) {
				continue
			}
			var state byte
			var ppid int
			if _, err := fmt.Sscanf(s[i+2:], "%c %d", &state, &ppid); err != nil {
				continue
			}
			if state == 'Z' && ppid == 1 {
				reapIfOrphan(pid)
			}
		}
	}
}

var self *agent

// reapIfOrphan waits for pid unless it is one of the agent's commands. It
// holds the agent's lock, which run holds while it starts and records a
// command.
func reapIfOrphan(pid int) {
	if self == nil {
		return
	}
	self.mu.Lock()
	defer self.mu.Unlock()
	for _, p := range self.procs {
		if p.Pid == pid {
			return
		}
	}
	var ws syscall.WaitStatus
	syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
}
