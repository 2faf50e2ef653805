package bus

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestPubAckError(t *testing.T) {
	noResponders := nats.Header{"Status": []string{"503"}}
	for _, c := range []struct {
		name string
		msg  *nats.Msg
		want error
		code jetstream.ErrorCode
	}{
		{"pub ack", &nats.Msg{Data: []byte(`{"stream":"PASSERELLE_PUBSUB", "seq":42}`)}, nil, 0},
		{"duplicate", &nats.Msg{Data: []byte(`{"stream":"PASSERELLE_PUBSUB", "seq":42,"duplicate": true}`)}, nil, 0},
		{"with a domain", &nats.Msg{Data: []byte(`{"stream":"S", "domain":"hub", "seq":7}`)}, nil, 0},
		{"stream error", &nats.Msg{Data: []byte(`{"error":{"code":503,"err_code":10158,"description":"duplicate message id is in process"},"stream":"S","seq":0}`)}, nil, jsErrDuplicateInProcess},
		{"error first", &nats.Msg{Data: []byte(`{"error":{"code":400,"err_code":10054,"description":"maximum messages exceeded"}}`)}, nil, 10054},
		{"no responders", &nats.Msg{Header: noResponders}, jetstream.ErrNoStreamResponse, 0},
		{"empty", &nats.Msg{}, jetstream.ErrInvalidJSAck, 0},
		{"not JSON", &nats.Msg{Data: []byte("+OK")}, jetstream.ErrInvalidJSAck, 0},
		{"no stream", &nats.Msg{Data: []byte(`{"seq":1}`)}, jetstream.ErrInvalidJSAck, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := pubAckError(c.msg)
			switch {
			case c.code != 0:
				if got := jsErrCode(err); got != c.code {
					t.Fatalf("error %v (code %d), want code %d", err, got, c.code)
				}
			case !errors.Is(err, c.want) && err != c.want:
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
}

// TestPublisherEnds: every attempt ends once, with the stream's answer,
// its timeout when nothing answers, or the publisher's close.
func TestPublisherEnds(t *testing.T) {
	srv, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), DontListen: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("the NATS server did not start")
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	// A subject something listens on without answering.
	silent, err := nc.SubscribeSync("silent")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Unsubscribe()

	var mu sync.Mutex
	ended := map[*nats.Msg][]error{}
	all := make(chan struct{}, 100)
	p, err := newPublisher(nc, time.Second, func(m *nats.Msg, err error) {
		mu.Lock()
		ended[m] = append(ended[m], err)
		mu.Unlock()
		all <- struct{}{}
	})
	if err != nil {
		t.Fatal(err)
	}
	stored := &nats.Msg{Subject: "s.a", Data: []byte("x")}
	unanswered := &nats.Msg{Subject: "silent", Data: []byte("y")}
	for _, m := range []*nats.Msg{stored, stored, unanswered} {
		if err := p.publish(m); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		select {
		case <-all:
		case <-time.After(5 * time.Second):
			t.Fatal("an attempt did not end within 5 s")
		}
	}
	if !p.waitIdle(time.Second) {
		t.Fatalf("%d attempts still in flight", p.inFlight())
	}
	mu.Lock()
	if got := ended[stored]; len(got) != 2 || got[0] != nil || got[1] != nil {
		t.Errorf("stored message: %v, want two acknowledgements", got)
	}
	if got := ended[unanswered]; len(got) != 1 || !errors.Is(got[0], jetstream.ErrAsyncPublishTimeout) {
		t.Errorf("unanswered message: %v, want one timeout", got)
	}
	mu.Unlock()
	if stored.Reply != "" || unanswered.Reply != "" {
		t.Error("publish changed the message it was given")
	}

	p.close()
	st, err := js.Stream(t.Context(), "S")
	if err != nil {
		t.Fatal(err)
	}
	if i, err := st.Info(t.Context()); err != nil || i.State.Msgs != 2 {
		t.Errorf("stream holds %v messages (%v), want 2", i, err)
	}

	// Close ends what is in flight, and sends nothing more (a timeout
	// long enough not to end it first).
	var closedErr []error
	p, err = newPublisher(nc, time.Hour, func(_ *nats.Msg, err error) { closedErr = append(closedErr, err) })
	if err != nil {
		t.Fatal(err)
	}
	if err := p.publish(unanswered); err != nil {
		t.Fatal(err)
	}
	p.close()
	if len(closedErr) != 1 || !errors.Is(closedErr[0], jetstream.ErrJetStreamPublisherClosed) {
		t.Errorf("in flight at close: %v, want ErrJetStreamPublisherClosed", closedErr)
	}
	if err := p.publish(stored); !errors.Is(err, jetstream.ErrJetStreamPublisherClosed) {
		t.Errorf("publish after close: %v", err)
	}
}
