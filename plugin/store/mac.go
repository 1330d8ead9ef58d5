package store

import "github.com/gallium/gallium-net/plugin/model"

// parseMAC returns a 6-byte MAC in lower-case colon form.
func parseMAC(s string) (string, error) { return model.NormalizeMAC(s) }

// candidateMAC draws a random MAC under prefix with the model's allocator
// (which owns the prefix rules: unicast, never 0xFE). Random candidates
// spread concurrent allocators over the whole space, so compare-and-swap
// collisions stay rare; the ledger, not this function, guarantees
// uniqueness.
func candidateMAC(prefix string) (string, error) {
	mac, err := model.AllocateMAC(prefix, nil, nil)
	if err != nil {
		return "", err
	}
	return mac.String(), nil
}
