package hub

import (
	"crypto/tls"
	"io"
	"net"
	"net/url"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// closeWait bounds how long closing a gateway connection waits for the
// bridge to close its end.
const closeWait = 500 * time.Millisecond

// openConn dials the bridge for paho (plain TCP, or TLS for ssl://) and
// returns a connection whose Close waits for the bridge to see it end.
func openConn(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
	d := &net.Dialer{Timeout: o.ConnectTimeout}
	var c net.Conn
	var err error
	if uri.Scheme == "ssl" {
		c, err = tls.DialWithDialer(d, "tcp", uri.Host, o.TLSConfig)
	} else {
		c, err = d.Dial("tcp", uri.Host)
	}
	if err != nil {
		return nil, err
	}
	return &closeWaitConn{Conn: c}, nil
}

// closeWaitConn is a connection to the bridge whose Close first ends the
// sending side (a TCP FIN, or TLS's close_notify) and waits, at most
// closeWait, for the bridge to close its own: once Close returns, the
// bridge has read the end of this connection. A gateway's next
// connection, on this hub or on the replica the gateway moves to, then
// never reaches the bridge while the bridge still holds this one.
type closeWaitConn struct {
	net.Conn
	once sync.Once
	err  error
}

func (c *closeWaitConn) Close() error {
	c.once.Do(func() {
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			// paho's reader may read the rest concurrently: both see
			// the end.
			_ = c.Conn.SetReadDeadline(time.Now().Add(closeWait))
			_, _ = io.Copy(io.Discard, c.Conn)
		}
		c.err = c.Conn.Close()
	})
	return c.err
}
