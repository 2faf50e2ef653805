package bridge

import (
	"errors"
	"log/slog"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// failureLevel is the log level of a failure that concerns one message:
// debug when its cause is an outage of the store or the bus, which the
// process logs once (the readiness checks of pkg/ops, the bus's own
// lines), rather than once per message; warn otherwise.
func failureLevel(err error) slog.Level {
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, bus.ErrUnavailable) {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}
