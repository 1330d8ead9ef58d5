// Package proto is the wire format between the kernel lab's host side
// (package lab) and its guest agent (test/lab/agent): one JSON object per
// line over a virtio-serial port, in both directions. Commands are
// multiplexed by ID, so several can run at once in one VM.
package proto

// PortName is the virtio-serial port name the agent looks for
// (/sys/class/virtio-ports/*/name).
const PortName = "gallium.agent"

// Ops, host to guest.
const (
	OpPing = "ping" // answered by OpPong with the same ID
	OpRun  = "run"  // run Cmd with /bin/sh -c; OpOut chunks, then one OpExit
	OpKill = "kill" // SIGKILL the process group of run ID
	OpPut  = "put"  // write Data to Path with Mode; answered by OpExit (Code 0 or 1, Err)
)

// Ops, guest to host.
const (
	OpPong = "pong"
	OpOut  = "out"  // a chunk of combined stdout+stderr of run ID
	OpExit = "exit" // run ID ended: Code is the exit code, -1 with Err if it could not run or died of a signal
	OpLog  = "log"  // agent diagnostics (ID 0)
)

// Msg is one line of the protocol.
type Msg struct {
	Op   string   `json:"op"`
	ID   uint64   `json:"id,omitempty"`
	Cmd  string   `json:"cmd,omitempty"`
	Env  []string `json:"env,omitempty"`
	Dir  string   `json:"dir,omitempty"`
	Path string   `json:"path,omitempty"`
	Mode uint32   `json:"mode,omitempty"`
	Data []byte   `json:"data,omitempty"`
	Code int      `json:"code,omitempty"`
	Err  string   `json:"err,omitempty"`
}

// MaxLine bounds one protocol line (a put of a large file is one line).
const MaxLine = 256 << 20
