package store

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error a Store returns for a reason of the caller's
// making matches one of them with errors.Is, and so does one that means
// the back end cannot be reached (ErrUnavailable); anything else is a
// failure of the back end.
var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrResourceExhausted  = errors.New("resource exhausted")
	// ErrUnavailable: the database cannot be reached (it is down,
	// restarting, or the network to it is cut). Unlike the others it is
	// not the caller's doing: retry later. Its message carries back end
	// detail, for the log only.
	ErrUnavailable = errors.New("the database is unreachable")
)

// Error is an error of a given kind whose message is meant for the API caller.
type Error struct {
	kind error
	msg  string
}

// Errorf returns an error that matches kind with errors.Is and whose message
// is the formatted text alone.
func Errorf(kind error, format string, args ...any) error {
	return &Error{kind: kind, msg: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.msg }

// Is reports whether target is the error's kind.
func (e *Error) Is(target error) bool { return target == e.kind }
