//go:build race

package storetest

// raceEnabled skips the slowest test under the race detector, which makes
// it ten times slower; it still runs in plain `go test`.
const raceEnabled = true
