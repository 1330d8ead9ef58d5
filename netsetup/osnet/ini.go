package osnet

import "strings"

// iniEntry is one "key=value" of an INI-style file (NetworkManager
// keyfiles, systemd units) with its section and line.
type iniEntry struct {
	section, key, value string
	line                int
}

// parseINI reads "[Section]" headers and "key=value" lines; "#" and ";"
// start comments, blank lines and anything else are skipped. Keys and
// sections keep their case (systemd's are case-sensitive).
func parseINI(text string) []iniEntry {
	var out []iniEntry
	section := ""
	for i, raw := range strings.Split(text, "\n") {
		t := strings.TrimSpace(raw)
		switch {
		case t == "" || t[0] == '#' || t[0] == ';':
		case t[0] == '[' && strings.HasSuffix(t, "]"):
			section = strings.TrimSpace(t[1 : len(t)-1])
		default:
			k, v, ok := strings.Cut(t, "=")
			if ok {
				out = append(out, iniEntry{section, strings.TrimSpace(k), strings.TrimSpace(v), i + 1})
			}
		}
	}
	return out
}
