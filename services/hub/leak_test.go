package hub_test

import (
	"bytes"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// leakTolerance is how many goroutines over the baseline checkNoLeaks
// accepts: gRPC's and net/http's own (a transport's keepalive or a
// connection being torn down at the moment of the count) come and go on
// their own schedule. A loaded CI machine once counted 4 over 3: the
// reader, writer and serving goroutines of gRPC transports still closing
// (no hub frame in them), so the bound is two gRPC connections' worth.
// Every goroutine of the hub or of paho is checked by name instead, with
// no tolerance.
const leakTolerance = 8

// ownedFrames are the code whose goroutines the hub owns: after every
// stream ends and the idle connection closes, none may remain.
var ownedFrames = []string{"passerelle/services/hub.", "eclipse/paho.mqtt.golang"}

// goroutineBase is the goroutine count and the hub's or paho's goroutines
// (the hub server's Serve) before a test's work.
type goroutineBase struct {
	n     int
	owned []string
}

func baseline() goroutineBase {
	return goroutineBase{n: runtime.NumGoroutine(), owned: ownedGoroutines()}
}

// checkNoLeaks polls until no goroutine of the hub or paho remains but
// those of the baseline, and the count is back to the baseline (within
// leakTolerance); it fails with the goroutines left when they do not go.
func checkNoLeaks(t *testing.T, e *env, base goroutineBase) {
	t.Helper()
	checkNoLeaksAfter(t, base, e.closeIdle)
}

// checkNoLeaksAfter is checkNoLeaks, closing idle HTTP connections with
// closeIdle.
func checkNoLeaksAfter(t *testing.T, base goroutineBase, closeIdle func()) {
	t.Helper()
	// The provisioner's and the test's HTTP keep-alive connections are
	// pooled on purpose (3 goroutines each, 90 s idle timeout): they are
	// what the 5-12 extra goroutines seen before were.
	closeIdle()
	deadline := time.Now().Add(10 * time.Second)
	for {
		owned := ownedGoroutines()
		n := runtime.NumGoroutine()
		if len(owned) <= len(base.owned) && n <= base.n+leakTolerance {
			t.Logf("goroutines: %d before, %d after", base.n, n)
			return
		}
		if time.Now().After(deadline) {
			var all bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&all, 1)
			t.Fatalf("goroutines: %d before, %d after; of the hub or paho: %d (%d before)\n%s\nall:\n%s",
				base.n, n, len(owned), len(base.owned), strings.Join(owned, "\n\n"), all.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ownedGoroutines returns the stacks of the goroutines with a hub or paho
// frame (the test's own goroutines are in package hub_test, not hub.).
func ownedGoroutines() []string {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
	var out []string
	for _, g := range strings.Split(buf.String(), "\n\n") {
		for _, f := range ownedFrames {
			if strings.Contains(g, f) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}
