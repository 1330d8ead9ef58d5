package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gallium/gallium-net/plugin/clusterhome"
	"github.com/gallium/gallium-net/plugin/clusterjoin"
	"github.com/gallium/gallium-net/plugin/clusterpki"
	"github.com/gallium/gallium-net/plugin/storemember"
)

func clusterJoinCommand() *cli.Command {
	return &cli.Command{
		Name:      "join",
		Usage:     "join this hypervisor to the cluster store with a token from 'cluster init' or 'cluster token'",
		ArgsUsage: "TOKEN",
		Description: `Asks a running member (--server, its management IP) to admit this
hypervisor. Before anything is sent, the member must prove it holds the CA
the token pins: a wrong cluster or a man in the middle stops the join with
nothing disclosed. This hypervisor makes its own key; the member signs a
certificate for it, adds it to the store as a learner, and this hypervisor's
member (gallium-net-store.service) starts, catches up and is promoted to a
voting member.

The token may also be read from a file: --token-file FILE (keeps it out of
the shell's history).

A reinstalled hypervisor (a wiped disk) joins again under its old name with
--replace: the old member is removed first. A dead hypervisor that will not
come back is removed with 'gallium-net cluster remove NAME' on a member.

Examples:
   gallium-net cluster join --server 192.168.1.101 gn1::3f2a...::k7pq...
   gallium-net cluster join --server 192.168.1.101 --token-file /root/token --replace`,
		Flags: append(memberFlags(),
			&cli.StringFlag{Name: "server", Required: true, Usage: "a member's management `IP` (or IP:PORT)"},
			&cli.StringFlag{Name: "token-file", Usage: "read the token from `FILE`"},
			&cli.BoolFlag{Name: "replace", Usage: "this hypervisor was reinstalled: remove its old member of the same name first"},
		),
		Action: clusterJoin,
	}
}

func tokenArg(c *cli.Context) (clusterpki.Token, error) {
	raw := c.Args().First()
	if f := c.String("token-file"); f != "" {
		if raw != "" {
			return clusterpki.Token{}, errors.New("give the token as an argument or with --token-file, not both")
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return clusterpki.Token{}, fmt.Errorf("--token-file: %w", err)
		}
		raw = string(data)
	}
	if raw == "" {
		return clusterpki.Token{}, usageErrorf("the join token is missing: 'gallium-net cluster token' on a member prints it")
	}
	if c.NArg() > 1 {
		return clusterpki.Token{}, usageErrorf("one token expected, got %d arguments", c.NArg())
	}
	return clusterpki.ParseToken(raw)
}

func clusterJoin(c *cli.Context) error {
	tok, err := tokenArg(c)
	if err != nil {
		return err
	}
	h := homeOf(c)
	if err := refuseExistingHome(h); err != nil {
		return err
	}
	id, err := memberIdentity(c, "")
	if err != nil {
		return err
	}
	dataDir := c.String("data-dir")
	if err := checkDataDirFree(dataDir); err != nil {
		return err
	}
	csr, key, err := clusterpki.NewCSR(id.name)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "asking %s to admit %s (%s)\n", c.String("server"), id.name, id.address)
	req := clusterjoin.Request{Name: id.name, Address: id.address.String(), CSR: string(csr), Replace: c.Bool("replace")}
	ans, err := joinWaiting(c, tok, req)
	if err != nil {
		if strings.Contains(err.Error(), "name already in the cluster") && !c.Bool("replace") {
			return fmt.Errorf("%w\nif %s was reinstalled, join again with --replace", err, id.name)
		}
		return err
	}
	if id.cluster != "" && ans.Cluster != id.cluster {
		return fmt.Errorf("the member admitted %s into cluster %s, but the spec names cluster %s: check --server and the token, then remove %s there ('gallium-net cluster remove %s')",
			id.name, ans.Cluster, id.cluster, id.name, id.name)
	}
	if _, err := tls.X509KeyPair([]byte(ans.Cert), key); err != nil {
		return fmt.Errorf("the certificate %s signed is not for this hypervisor's key: %w", ans.AdmittedBy, err)
	}
	m := clusterhome.Member{
		Cluster: ans.Cluster, Name: id.name, Address: id.address.String(),
		ClientPort: ans.Ports.Client, PeerPort: ans.Ports.Peer, JoinPort: ans.Ports.Join,
		DataDir: dataDir, State: storemember.StateExisting, InitialCluster: ans.InitialCluster,
	}
	if err := h.Save(m, clusterhome.Files{CA: []byte(ans.CA), CAKey: []byte(ans.CAKey), Cert: []byte(ans.Cert), Key: key, Token: tok}); err != nil {
		return fmt.Errorf("%w\n%s is added to the store as a learner: remove it there ('gallium-net cluster remove %s') before joining again", err, id.name, id.name)
	}
	fmt.Fprintf(c.App.Writer, "admitted by %s into cluster %s (%d members with %s); membership written to %s\n",
		ans.AdmittedBy, ans.Cluster, len(ans.InitialCluster), id.name, h.Dir)
	for _, w := range ans.Warnings {
		fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", w)
	}
	return startAndWait(c, h, m)
}

// joinBusy are the refusals that pass by themselves: another hypervisor
// is joining (etcd takes one learner at a time), or the last one joined
// less than etcd's 5 s ago.
var joinBusy = []string{"another hypervisor is joining", "have not all been connected to each other"}

// joinWaiting asks to join, and while the cluster is busy with another
// join, says so and asks again, up to --timeout: two operators joining
// hv2 and hv3 at the same time both get in.
func joinWaiting(c *cli.Context, tok clusterpki.Token, req clusterjoin.Request) (*clusterjoin.Answer, error) {
	deadline := time.Now().Add(c.Duration("timeout"))
	for {
		ans, err := clusterjoin.Join(c.Context, c.String("server"), tok, req)
		busy := err != nil && slices.ContainsFunc(joinBusy, func(s string) bool { return strings.Contains(err.Error(), s) })
		if !busy || time.Now().After(deadline) {
			return ans, err
		}
		fmt.Fprintf(c.App.ErrWriter, "  the cluster is busy with another join; asking again in 5 s (%v)\n", err)
		select {
		case <-c.Context.Done():
			return nil, c.Context.Err()
		case <-time.After(5 * time.Second):
		}
	}
}

func clusterTokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "print the join token (on a member)",
		Description: `The token lets a host join the cluster's store: keep it secret.

Example:
   gallium-net cluster token`,
		Flags: []cli.Flag{clusterDirFlag(), configFlag()},
		Action: func(c *cli.Context) error {
			tok, err := homeOf(c).Token()
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("%w: this hypervisor is not a member of a cluster store ('gallium-net cluster init' or 'cluster join' first)", err)
				}
				return err
			}
			fmt.Fprintln(c.App.Writer, tok)
			return nil
		},
	}
}
