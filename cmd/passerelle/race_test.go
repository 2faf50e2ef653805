//go:build race

package main

// raceEnabled shrinks the 10,000-device migration test under the race
// detector, which makes SQLite some twenty times slower; .ci/run runs it
// full size without -race.
const raceEnabled = true
