package bridge

// fileReserve is the part of the open-file limit left to what is not a
// device connection: the store, the bus, the process's other listeners.
func fileReserve(limit uint64) uint64 { return max(limit/20, 32) }

// capUnderFileLimit returns maxConns, lowered under the process's
// open-file limit when it is over: past that limit Accept fails (EMFILE),
// for every client, and the store and the bus can no longer open files,
// while a cap refuses cleanly and only the excess.
func (b *Bridge) capUnderFileLimit(maxConns int) int {
	limit, ok := openFileLimit()
	if !ok {
		return maxConns
	}
	reserve := fileReserve(limit)
	if limit <= reserve || uint64(maxConns) <= limit-reserve {
		return maxConns
	}
	capped := int(limit - reserve)
	b.log.Warn("bridge: the connection cap is over the open-file limit: lowering it (raise the limit, ulimit -n, or lower --max-connections)",
		"max_connections", maxConns, "open_file_limit", limit, "now", capped)
	return capped
}
