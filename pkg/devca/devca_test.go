package devca_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/devca"
)

func TestEnsure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	f, err := devca.Ensure(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Created {
		t.Fatal("first call made nothing")
	}
	for _, key := range []string{f.CAKey, f.ServerKey} {
		if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", key, fi.Mode(), err)
		}
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	pair, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("the server certificate does not verify for %s against ca.pem: %v", host, err)
		}
	}

	again, err := devca.Ensure(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Created {
		t.Fatal("second call made new certificates")
	}
	caAgain, _ := os.ReadFile(f.CA)
	if string(caAgain) != string(caPEM) {
		t.Fatal("second call changed ca.pem")
	}
}

func TestEnsureCorrupt(t *testing.T) {
	dir := t.TempDir()
	if _, err := devca.Ensure(dir, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, devca.ServerKeyFile), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := devca.Ensure(dir, nil); err == nil {
		t.Fatal("a corrupt key was accepted")
	}
}

func TestEphemeral(t *testing.T) {
	server, client, err := devca.Ephemeral("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		c, err := lis.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", lis.Addr().String(), client)
	if err != nil {
		t.Fatalf("a client trusting the ephemeral CA: %v", err)
	}
	c.Close()
}
