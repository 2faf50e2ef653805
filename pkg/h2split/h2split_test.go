package h2split_test

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/h2split"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// TestSplit: the HTTP/2 preface goes to H2 and HTTP/1.1 to HTTP1, each
// with its first bytes given back; a silent connection is closed after
// the timeout.
func TestSplit(t *testing.T) {
	lis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	s := h2split.New(lis, 300*time.Millisecond)
	defer s.Close()
	for _, c := range []struct {
		send string
		to   net.Listener
	}{
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", s.H2()},
		{"POST /passerelle.hub.v1.Hub/ListGateways HTTP/1.1\r\n", s.HTTP1()},
	} {
		conn := testutil.Must(net.Dial("tcp", lis.Addr().String()))
		defer conn.Close()
		if _, err := io.WriteString(conn, c.send); err != nil {
			t.Fatal(err)
		}
		got := testutil.Must(c.to.Accept())
		buf := make([]byte, len(c.send))
		if _, err := io.ReadFull(got, buf); err != nil || string(buf) != c.send {
			t.Fatalf("read %q, %v; want %q", buf, err, c.send)
		}
		got.Close()
	}
	silent := testutil.Must(net.Dial("tcp", lis.Addr().String()))
	defer silent.Close()
	_ = silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("a silent connection is still open")
	}
	s.Close()
	if _, err := s.H2().Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}
