//go:build !linux

package slotgc

// dirEntry is an entry of a directory: its name, and whether it is a real
// directory (not a symlink to one).
type dirEntry struct {
	name  string
	isDir bool
}

// readSwarmEntries reads the swarm directory through the os package.
func readSwarmEntries(sw *swarmDir) ([]dirEntry, error) {
	dirEntries, err := sw.f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	entries := make([]dirEntry, len(dirEntries))
	for i, e := range dirEntries {
		entries[i] = dirEntry{name: e.Name(), isDir: e.IsDir()}
	}
	return entries, nil
}
