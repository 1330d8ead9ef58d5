package osnet

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path"
	"slices"
	"strings"
)

// The files `gallium-net host takeover` writes so that a manager lets go
// of gallium-net's interfaces and keeps managing everything else.
const (
	// NMDropIn sorts after the distribution's drop-ins, and adds to
	// unmanaged-devices ("+="), so an operator's own list stays.
	NMDropIn = "/etc/NetworkManager/conf.d/90-gallium-net.conf"
	// NetworkdDropIn sorts before the .network files installers and
	// netplan write (10-netplan-*, 20-wired, ...): networkd uses the first
	// file that matches a link.
	NetworkdDropIn = "/etc/systemd/network/00-gallium-net.network"
	// WaitOnlineDropIn skips systemd-networkd-wait-online.service when
	// networkd is left managing no link: it would wait for one to come
	// online until its timeout (2 min) at every boot, holding back
	// network-online.target and what waits for it.
	WaitOnlineDropIn = "/etc/systemd/system/systemd-networkd-wait-online.service.d/90-gallium-net.conf"
)

// ifupdownMark starts every line a takeover comments out, so that a reader
// (and a rollback) can tell them from the operator's own comments.
const ifupdownMark = "#gallium-net# "

// Edit is one file a takeover writes.
type Edit struct {
	Manager Manager `json:"manager"`
	// Path is inside the root (/etc/network/interfaces).
	Path string `json:"path"`
	// Existed and Old are the file before (Old is nil when it did not
	// exist); Mode is its permission bits, or the new file's.
	Existed bool        `json:"existed"`
	Old     []byte      `json:"old,omitempty"`
	Mode    fs.FileMode `json:"mode"`
	New     []byte      `json:"new"`
	// Why says what the edit makes the manager let go of.
	Why string `json:"why"`
}

// Release is what makes the OS's network managers let go of one
// hypervisor's interfaces: the files to write, and the commands that make a
// running manager read them again (also after a rollback has put the old
// files back).
type Release struct {
	Edits  []Edit   `json:"edits"`
	Reload []Reload `json:"reload,omitempty"`
	// Notes tell the operator what the takeover leaves alone and why.
	Notes []string `json:"notes,omitempty"`
}

// Reload tells a running manager to read its files again; a manager whose
// unit is not running reads them when it starts.
type Reload struct {
	Unit string   `json:"unit"`
	Argv []string `json:"argv"`
}

func (r Reload) String() string {
	return strings.Join(r.Argv, " ") + " (if " + r.Unit + " runs)"
}

// Empty reports whether no file needs writing.
func (r *Release) Empty() bool { return len(r.Edits) == 0 }

// Target is what a takeover takes from the OS's managers: interface names
// (adapters with their permanent MAC when known, bonds, bridges) and the
// management IP.
type Target struct {
	Names []string
	MAC   func(name string) net.HardwareAddr
	Addr  netip.Addr
	// Others are the host's other network adapters (name and permanent
	// MAC), which the OS's managers keep; OthersKnown is false when they
	// are unknown (a --root tree).
	Others      []Adapter
	OthersKnown bool
}

// Adapter is a network adapter's name and permanent MAC (nil if unknown).
type Adapter struct {
	Name string
	MAC  net.HardwareAddr
}

func (t Target) mac(name string) net.HardwareAddr {
	if t.MAC == nil {
		return nil
	}
	return t.MAC(name)
}

// PlanRelease works out, from the files under root, the edits that make
// each installed manager let go of t:
//
//   - ifupdown: the auto/allow-* entries and iface stanzas of t's
//     interfaces (and a stanza that holds t.Addr) are commented out in place
//     with a "#gallium-net# " mark; ifupdown reads its files only when told
//     to, so nothing is reloaded;
//   - NetworkManager: NMDropIn lists t's interfaces (and the adapters' MACs)
//     in unmanaged-devices; `nmcli general reload conf`;
//   - systemd-networkd (and netplan, which renders for it): NetworkdDropIn
//     matches t's names with Unmanaged=yes; `networkctl reload`.
//
// A manager that is not installed gets nothing. Files already right give
// no edit, so a second takeover is empty.
func PlanRelease(root string, t Target, installed map[Manager]bool) (*Release, error) {
	claims, errs := Scan(root)
	if len(errs) > 0 {
		return nil, fmt.Errorf("read the OS's network configuration under %s: %w", root, errors.Join(errs...))
	}
	r := &Release{}
	if installed[Ifupdown] {
		edits, err := releaseIfupdown(root, claims, t)
		if err != nil {
			return nil, err
		}
		r.Edits = append(r.Edits, edits...)
	}
	if installed[NetworkManager] {
		if err := r.add(root, NetworkManager, NMDropIn, nmDropIn(t), "NetworkManager leaves "+strings.Join(t.Names, ", ")+" alone"); err != nil {
			return nil, err
		}
		r.Reload = append(r.Reload, Reload{Unit: "NetworkManager.service", Argv: []string{"nmcli", "general", "reload", "conf"}})
	}
	if installed[Networkd] || installed[Netplan] {
		if err := r.add(root, Networkd, NetworkdDropIn, networkdDropIn(t), "systemd-networkd leaves "+strings.Join(t.Names, ", ")+" alone"); err != nil {
			return nil, err
		}
		r.Reload = append(r.Reload, Reload{Unit: "systemd-networkd.service", Argv: []string{"networkctl", "reload"}})
		if err := r.waitOnline(root, claims, t, installed); err != nil {
			return nil, err
		}
		for _, n := range t.Names {
			for _, c := range Of(claims, n, t.mac(n)) {
				if c.Manager == Networkd && path.Base(c.File) < path.Base(NetworkdDropIn) {
					return nil, fmt.Errorf("%s matches %s and sorts before %s, so systemd-networkd would still use it: rename it to sort after %s (or remove %s from its [Match]) and run the takeover again", c.File, n, path.Base(NetworkdDropIn), path.Base(NetworkdDropIn), n)
				}
			}
		}
	}
	if installed[Netplan] {
		r.Notes = append(r.Notes, "netplan's YAML stays as it is: what it renders for systemd-networkd or NetworkManager loses to the files above")
	}
	return r, nil
}

// waitOnline skips systemd-networkd-wait-online when networkd (enabled)
// keeps no adapter of this host: none of t.Others is matched by a
// .network file that would still apply.
func (r *Release) waitOnline(root string, claims []Claim, t Target, installed map[Manager]bool) error {
	if !installed[Networkd] {
		return nil
	}
	if !t.OthersKnown {
		r.Notes = append(r.Notes, "the host's other adapters are unknown under --root: if systemd-networkd is left managing none, systemd-networkd-wait-online.service waits out its timeout at every boot; the takeover on the host skips it then ("+WaitOnlineDropIn+")")
		return nil
	}
	for _, o := range t.Others {
		for _, c := range Of(claims, o.Name, o.MAC) {
			if c.Manager == Networkd {
				return nil // networkd keeps o: waiting for it is right
			}
		}
	}
	content := []byte("# Written by 'gallium-net host takeover': systemd-networkd manages no adapter\n" +
		"# of this hypervisor any more (gallium-net-host.service sets them up, before\n" +
		"# network-online.target), so waiting for one to come online would only time\n" +
		"# out at every boot. Remove this file if networkd is given an adapter again;\n" +
		"# 'gallium-net host rollback' removes it.\n" +
		"[Unit]\nConditionPathExists=!" + NetworkdDropIn + "\n")
	// No daemon-reload: the drop-in matters at the next boot, which reads
	// it, and a daemon-reload between the managers' reloads and the plan
	// (seconds on a slow host) would only lengthen the management IP's
	// gap (the lab measured 6.3 s instead of 1.8 s).
	return r.add(root, Networkd, WaitOnlineDropIn, content, "systemd-networkd-wait-online.service does not wait for links networkd no longer manages (from the next boot)")
}

// add appends an edit of rel to content unless the file is already so.
func (r *Release) add(root string, m Manager, rel string, content []byte, why string) error {
	old, existed, mode, err := readForEdit(root, rel, 0o644)
	if err != nil {
		return err
	}
	if existed && bytes.Equal(old, content) {
		return nil
	}
	r.Edits = append(r.Edits, Edit{Manager: m, Path: rel, Existed: existed, Old: old, Mode: mode, New: content, Why: why})
	return nil
}

func readForEdit(root, rel string, mode fs.FileMode) ([]byte, bool, fs.FileMode, error) {
	st, err := os.Stat(inRoot(root, rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, mode, nil
	}
	if err != nil {
		return nil, false, 0, err
	}
	b, err := os.ReadFile(inRoot(root, rel))
	if err != nil {
		return nil, false, 0, err
	}
	return b, true, st.Mode().Perm(), nil
}

func nmDropIn(t Target) []byte {
	var specs []string
	for _, n := range t.Names {
		specs = append(specs, "interface-name:"+n)
	}
	for _, n := range t.Names {
		if m := t.mac(n); m != nil {
			specs = append(specs, "mac:"+m.String())
		}
	}
	return []byte("# Written by 'gallium-net host takeover': gallium-net configures these\n" +
		"# adapters, bonds and bridges; NetworkManager manages everything else.\n" +
		"# 'gallium-net host rollback' removes this file.\n" +
		"[keyfile]\nunmanaged-devices+=" + strings.Join(specs, ";") + "\n")
}

func networkdDropIn(t Target) []byte {
	return []byte("# Written by 'gallium-net host takeover': gallium-net configures these\n" +
		"# adapters, bonds and bridges; systemd-networkd manages everything else.\n" +
		"# 'gallium-net host rollback' removes this file.\n" +
		"[Match]\nName=" + strings.Join(t.Names, " ") + "\n\n[Link]\nUnmanaged=yes\n")
}

// releaseIfupdown comments out, file by file, the ifupdown claims on t.
func releaseIfupdown(root string, claims []Claim, t Target) ([]Edit, error) {
	// Lines to release per file: a stanza start, or an auto/allow-* line
	// with the names to take out of it.
	type hit struct {
		names []string
		iface bool
	}
	// t's names, and an interface whose stanza holds the management IP
	// (a bridge an installer made): its "auto" line goes with its stanza.
	take := slices.Clone(t.Names)
	for _, c := range claims {
		if c.Manager == Ifupdown && t.Addr.IsValid() && c.HasAddress(t.Addr) {
			take = append(take, c.Names...)
		}
	}
	byFile := map[string]map[int]*hit{}
	var files []string
	for _, c := range claims {
		if c.Manager != Ifupdown {
			continue
		}
		var names []string
		for _, n := range c.Names {
			if slices.Contains(take, n) {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			continue
		}
		if byFile[c.File] == nil {
			byFile[c.File] = map[int]*hit{}
			files = append(files, c.File)
		}
		h := byFile[c.File][c.Line]
		if h == nil {
			h = &hit{}
			byFile[c.File][c.Line] = h
		}
		h.names = append(h.names, names...)
		h.iface = h.iface || strings.HasPrefix(c.What, "iface ")
	}
	var edits []Edit
	for _, f := range files {
		old, _, mode, err := readForEdit(root, f, 0o644)
		if err != nil {
			return nil, err
		}
		lines := strings.SplitAfter(string(old), "\n")
		var out strings.Builder
		var released []string
		inStanza, continued := false, false
		for i := 0; i < len(lines); i++ {
			l := lines[i]
			fields := strings.Fields(l)
			if continued {
				// The rest of a line the takeover commented out.
				out.WriteString(ifupdownMark + l)
				continued = strings.HasSuffix(strings.TrimRight(l, "\n"), "\\")
				continue
			}
			if len(fields) > 0 && isStanzaKeyword(fields[0]) {
				inStanza = false
			}
			h := byFile[f][i+1]
			commented := true
			switch {
			case h != nil && h.iface:
				inStanza = true
				released = append(released, strings.Join(fields[:min(4, len(fields))], " "))
				out.WriteString(ifupdownMark + l)
			case h != nil:
				// "auto lo eno1": eno1 goes, lo stays on a line of its own.
				var keep []string
				for _, n := range fields[1:] {
					if !slices.Contains(h.names, n) {
						keep = append(keep, n)
					}
				}
				released = append(released, fields[0]+" "+strings.Join(h.names, " "))
				out.WriteString(ifupdownMark + l)
				if len(keep) > 0 {
					out.WriteString(fields[0] + " " + strings.Join(keep, " ") + "\n")
				}
			case inStanza && len(fields) > 0 && !strings.HasPrefix(fields[0], "#"):
				out.WriteString(ifupdownMark + l)
			default:
				out.WriteString(l)
				commented = false
			}
			continued = commented && strings.HasSuffix(strings.TrimRight(l, "\n"), "\\")
		}
		edits = append(edits, Edit{Manager: Ifupdown, Path: f, Existed: true, Old: old, Mode: mode, New: []byte(out.String()),
			Why: "ifupdown no longer brings up " + strings.Join(released, ", ")})
	}
	return edits, nil
}

// isStanzaKeyword reports whether an interfaces(5) line starting with w
// ends the stanza before it.
func isStanzaKeyword(w string) bool {
	switch w {
	case "iface", "auto", "mapping", "source", "source-directory", "rename", "no-auto-down", "no-scripts":
		return true
	}
	return strings.HasPrefix(w, "allow-")
}

// WriteEdits writes the edits' new contents under root, each atomically
// (a temporary file renamed over the old one), in order. On an error the
// files already written are put back (RestoreFiles) and the error names
// the file.
func WriteEdits(root string, edits []Edit, write func(path string, data []byte, mode fs.FileMode) error) error {
	for i, e := range edits {
		full := inRoot(root, e.Path)
		if err := os.MkdirAll(path.Dir(full), 0o755); err != nil {
			return errors.Join(fmt.Errorf("%s: %w", full, err), RestoreFiles(root, edits[:i], write))
		}
		if err := write(full, e.New, e.Mode); err != nil {
			return errors.Join(fmt.Errorf("%s: %w", full, err), RestoreFiles(root, edits[:i], write))
		}
	}
	return nil
}

// RestoreFiles puts the edited files back as they were: the old bytes and
// mode, and a file the edit created is removed.
func RestoreFiles(root string, edits []Edit, write func(path string, data []byte, mode fs.FileMode) error) error {
	var errs []error
	for i := len(edits) - 1; i >= 0; i-- {
		e := edits[i]
		full := inRoot(root, e.Path)
		if !e.Existed {
			if err := os.Remove(full); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove %s: %w", full, err))
			}
			continue
		}
		if err := write(full, e.Old, e.Mode); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", full, err))
		}
	}
	return errors.Join(errs...)
}
