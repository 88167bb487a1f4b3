//go:build !linux

package slotgc

// readSwarmEntries reads the swarm directory through the os package.
func readSwarmEntries(sw *swarmDir) ([]swarmEntry, error) {
	dirEntries, err := sw.f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	entries := make([]swarmEntry, len(dirEntries))
	for i, e := range dirEntries {
		entries[i] = swarmEntry{name: e.Name(), isDir: e.IsDir()}
	}
	return entries, nil
}
