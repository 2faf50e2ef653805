package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Command is a command for a device: its bytes and the subfolder of
// /devices/{id}/commands/{subfolder} ("" for /devices/{id}/commands).
type Command struct {
	Data      []byte
	SubFolder string
}

// CommandHandler delivers a command to a device this process holds. It
// returns nil once the command is delivered, ErrNotConnected (wrapped or
// not) when the device is in fact not reachable (gone, or not subscribed
// to its commands topic), or another error, which SendCommand returns
// wrapped in ErrCommandFailed. ctx ends at the sender's deadline.
type CommandHandler func(ctx context.Context, cmd Command) error

// Wire format of commands: the data is the payload, the subfolder a
// header; the reply is empty on success, or carries an error code and
// message in headers.
const (
	hdrCmdSubFolder = "subFolder"
	hdrCmdTimeout   = "Passerelle-Timeout-Ms"
	hdrCmdErrCode   = "Passerelle-Error-Code"
	hdrCmdErrMsg    = "Passerelle-Error"
	errCodeNotConn  = "not-connected"
	errCodeFailed   = "failed"
	errCodeDeadline = "deadline"
	commandQueue    = "passerelle-bridge"
)

func (b *Bus) commandSubject(numID uint64) string {
	return b.opts.ControlPrefix + ".command." + strconv.FormatUint(numID, 10)
}

// SendCommand delivers cmd to the device numID through the bridge that
// holds it, and returns once that bridge's handler returned. It returns
// ErrNotConnected at once when no bridge holds the device (NATS answers
// "no responders" without waiting for a timeout), the handler's error
// wrapped in ErrCommandFailed (or context.DeadlineExceeded when the handler
// ran out of time), or ctx's error. Without a deadline on ctx it
// waits at most Options.CommandTimeout. While the connection to NATS is
// down it fails at once with an error wrapping ErrUnavailable: whether a
// bridge holds the device cannot be known.
func (b *Bus) SendCommand(ctx context.Context, numID uint64, cmd Command) error {
	if numID == 0 {
		return fmt.Errorf("%w: command without a device number", ErrInvalid)
	}
	if err := b.Ready(ctx); err != nil {
		return fmt.Errorf("bus: command for device %d: %w", numID, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.opts.CommandTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	m := nats.NewMsg(b.commandSubject(numID))
	m.Data = cmd.Data
	if cmd.SubFolder != "" {
		m.Header.Set(hdrCmdSubFolder, cmd.SubFolder)
	}
	injectTrace(ctx, m.Header)
	// The handler's context ends when the sender stops waiting.
	m.Header.Set(hdrCmdTimeout, strconv.FormatInt(time.Until(deadline).Milliseconds(), 10))
	resp, err := b.nc.RequestMsgWithContext(ctx, m)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return ErrNotConnected
	case err != nil:
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("bus: command for device %d: %w", numID, ctxErr)
		}
		return fmt.Errorf("bus: command for device %d: %w", numID, closedErr(err))
	}
	switch resp.Header.Get(hdrCmdErrCode) {
	case "":
		return nil
	case errCodeNotConn:
		// The handler's message often wraps ErrNotConnected already.
		msg := strings.TrimPrefix(resp.Header.Get(hdrCmdErrMsg), ErrNotConnected.Error()+": ")
		return fmt.Errorf("%w: %s", ErrNotConnected, msg)
	case errCodeDeadline:
		// The handler ran out of the time the sender gave it.
		return fmt.Errorf("bus: command for device %d: %s: %w", numID, resp.Header.Get(hdrCmdErrMsg), context.DeadlineExceeded)
	default:
		return fmt.Errorf("%w: %s", ErrCommandFailed, resp.Header.Get(hdrCmdErrMsg))
	}
}

// HandleCommands routes the commands for device numID to handler until
// stop is called. A bridge calls it while it holds the device's (or its
// gateway's) connection and the device is subscribed to its commands
// topic. When bridge instances share a NATS server, each command goes to
// one of the handlers for the device.
//
// Handlers run on goroutines of their own, at most
// Options.CommandConcurrency at once in this process; commands beyond that
// wait in a buffer, and past the buffer NATS drops them (the sender then
// sees its deadline pass). A command that arrives after stop is answered
// ErrNotConnected. stop does not wait for running handlers; Close does.
func (b *Bus) HandleCommands(numID uint64, handler CommandHandler) (stop func(), err error) {
	if numID == 0 {
		return nil, fmt.Errorf("%w: command handler without a device number", ErrInvalid)
	}
	// Holding cmdMu until the subscription is registered keeps the
	// dispatcher from seeing a message for an unknown subscription.
	b.cmdMu.Lock()
	select {
	case <-b.closed:
		b.cmdMu.Unlock()
		return nil, ErrClosed
	default:
	}
	sub, err := b.nc.ChanQueueSubscribe(b.commandSubject(numID), commandQueue, b.cmdCh)
	if err != nil {
		b.cmdMu.Unlock()
		return nil, fmt.Errorf("bus: subscribing to commands for device %d: %w", numID, closedErr(err))
	}
	b.cmdSubs[sub] = handler
	b.cmdMu.Unlock()
	// The server must know of the subscription before a SendCommand
	// elsewhere would otherwise get "no responders".
	if err := b.nc.Flush(); err != nil {
		b.logger.Warn("bus: flushing a command subscription", "device_num_id", numID, "err", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			b.cmdMu.Lock()
			delete(b.cmdSubs, sub)
			b.cmdMu.Unlock()
			_ = sub.Unsubscribe()
		})
	}, nil
}

// dispatchCommands reads the commands of every HandleCommands subscription
// (one shared channel, so that thousands of held devices cost no goroutine
// each) and runs each handler on a goroutine of its own.
func (b *Bus) dispatchCommands() {
	defer b.wg.Done()
	for {
		select {
		case m := <-b.cmdCh:
			b.cmdMu.Lock()
			handler := b.cmdSubs[m.Sub]
			b.cmdMu.Unlock()
			if handler == nil {
				b.respond(m, ErrNotConnected)
				continue
			}
			select {
			case b.cmdSem <- struct{}{}:
			case <-b.closed:
				return
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer func() { <-b.cmdSem }()
				b.runCommand(m, handler)
			}()
		case <-b.closed:
			return
		}
	}
}

func (b *Bus) runCommand(m *nats.Msg, handler CommandHandler) {
	timeout := b.opts.CommandTimeout
	if ms, err := strconv.ParseInt(m.Header.Get(hdrCmdTimeout), 10, 64); err == nil {
		timeout = time.Duration(ms) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(extractTrace(b.ctx, m.Header), timeout)
	defer cancel()
	err := handler(ctx, Command{Data: m.Data, SubFolder: m.Header.Get(hdrCmdSubFolder)})
	b.respond(m, err)
}

func (b *Bus) respond(m *nats.Msg, err error) {
	reply := &nats.Msg{Subject: m.Reply}
	if err != nil {
		code := errCodeFailed
		switch {
		case errors.Is(err, ErrNotConnected):
			code = errCodeNotConn
		case errors.Is(err, context.DeadlineExceeded):
			code = errCodeDeadline
		}
		reply.Header = nats.Header{hdrCmdErrCode: {code}, hdrCmdErrMsg: {err.Error()}}
	}
	if m.Reply == "" {
		return
	}
	if perr := b.nc.PublishMsg(reply); perr != nil {
		b.logger.Warn("bus: answering a command", "subject", m.Subject, "err", perr)
	}
}
