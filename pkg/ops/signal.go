package ops

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// SignalContext returns a context that ends at the first of sigs (main
// passes os.Interrupt and syscall.SIGTERM), which starts the process's
// graceful stop (with its drain). At a second one it writes a line saying
// so to w and calls exit with ExitCode(sig): the operator asked twice, so
// the process stops at once, whatever it was still waiting for. name
// starts both lines ("bridge").
//
// stop releases the signals (a later one gets Go's default behaviour) and
// ends the goroutine; call it once run returns.
func SignalContext(parent context.Context, w io.Writer, name string, exit func(code int), sigs ...os.Signal) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		first := true
		for {
			select {
			case <-done:
				return
			case sig := <-ch:
				if first {
					first = false
					fmt.Fprintf(w, "%s: %s: stopping gracefully (send it again to stop at once)\n", name, sig)
					cancel()
					continue
				}
				fmt.Fprintf(w, "%s: %s again: stopping at once, without waiting for the graceful stop\n", name, sig)
				exit(ExitCode(sig))
				return
			}
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
			<-ended
			cancel()
		})
	}
}

// ExitCode is the exit status of a process stopped by sig, as a shell
// reports one killed by it: 128 plus the signal number (130 for SIGINT,
// 143 for SIGTERM); 1 for a signal without a number.
func ExitCode(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}
