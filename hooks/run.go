package main

import (
	"io"
)

// env is everything an invocation may touch besides its arguments and stdio;
// tests point it at temporary directories and a fake kernel.
type env struct {
	// StateDir holds the local records of running NICs.
	StateDir string
	// SnapshotPath is this host's snapshot written by gallium-net.
	SnapshotPath string
}

func defaultEnv() env {
	return env{StateDir: "/run/gallium-net/hook", SnapshotPath: "/var/lib/gallium-net/host-snapshot.json"}
}

// run executes one hook invocation and returns the process exit status.
func run(argv []string, stdin io.Reader, stdout, stderr io.Writer, e env) int {
	inv := parseArgs(argv)
	_ = inv
	return 0
}
