package osnet

import (
	"fmt"
	"sort"

	"gopkg.in/yaml.v3"
)

// netplanDirs in order of precedence (a file name in an earlier one hides
// the same name in the later ones).
var netplanDirs = []string{"/etc/netplan", "/run/netplan", "/lib/netplan"}

// scanNetplan reads the netplan YAML files: each device under ethernets,
// bonds, bridges and vlans claims its match (name, macaddress) or its ID,
// with addresses and dhcp4.
func scanNetplan(root string) ([]Claim, []error) {
	return scanLayered(root, netplanDirs, ".yaml", parseNetplan)
}

// netplanDevice is the part of a netplan device gallium-net reads.
type netplanDevice struct {
	Match struct {
		Name       string `yaml:"name"`
		MACAddress string `yaml:"macaddress"`
	} `yaml:"match"`
	SetName   string   `yaml:"set-name"`
	Addresses []string `yaml:"addresses"`
	DHCP4     bool     `yaml:"dhcp4"`
}

func parseNetplan(file string, data []byte) ([]Claim, error) {
	var doc struct {
		Network map[string]yaml.Node `yaml:"network"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var claims []Claim
	kinds := make([]string, 0, len(doc.Network))
	for k := range doc.Network {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		switch kind {
		case "ethernets", "bonds", "bridges", "vlans":
		default:
			continue
		}
		node := doc.Network[kind]
		if node.Kind != yaml.MappingNode {
			continue
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			id, body := node.Content[i], node.Content[i+1]
			var d netplanDevice
			if err := body.Decode(&d); err != nil {
				return claims, fmt.Errorf("%s:%d: %s %s: %w", file, id.Line, kind, id.Value, err)
			}
			c := Claim{Manager: Netplan, File: file, Line: id.Line, MAC: d.Match.MACAddress, DHCP: d.DHCP4, What: kind + ": " + id.Value}
			switch {
			case d.Match.Name != "":
				c.Names = []string{d.Match.Name}
			case d.Match.MACAddress == "":
				c.Names = []string{id.Value}
			}
			if d.SetName != "" {
				c.Names = append(c.Names, d.SetName)
				c.What += " (set-name " + d.SetName + ")"
			}
			for _, a := range d.Addresses {
				p, err := parsePrefix(a, 32)
				if err != nil {
					return claims, fmt.Errorf("%s:%d: %s %s: address %q: %w", file, id.Line, kind, id.Value, a, err)
				}
				c.Addresses = append(c.Addresses, p)
			}
			claims = append(claims, c)
		}
	}
	return claims, nil
}
