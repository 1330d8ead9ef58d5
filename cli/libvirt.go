package main

import (
	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/snapshot"
	"github.com/gallium/gallium-net/plugin/vmnet/libvirtconn"
)

// DefaultConnectURI is the libvirt connection of every libvirt command, as
// virsh's default for root.
const DefaultConnectURI = "qemu:///system"

// connectFlag is --connect/-c URI, as in virsh.
func connectFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "connect",
		Aliases: []string{"c"},
		Value:   DefaultConnectURI,
		EnvVars: []string{"LIBVIRT_DEFAULT_URI"},
		Usage:   "libvirt connection `URI`, as for virsh",
	}
}

// snapshotFlag is --snapshot: where the hook's host snapshot lives.
func snapshotFlag() cli.Flag {
	return &cli.StringFlag{
		Name:  "snapshot",
		Value: snapshot.DefaultPath,
		Usage: "host snapshot `FILE` the libvirt hook reads",
	}
}

// openConn connects to the URI --connect names.
func openConn(c *cli.Context) (*libvirtconn.Conn, error) {
	return libvirtconn.Open(c.String("connect"))
}
