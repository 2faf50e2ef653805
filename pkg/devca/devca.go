// Package devca makes and keeps the development certificate authority of a
// data folder: a CA (ca.pem, the file devices trust, like roots.pem in the
// Cloud IoT samples) and a server certificate signed by it for the bridge,
// valid for localhost and 127.0.0.1. Keys are ECDSA P-256: a TLS handshake
// with one costs ~40 us of server CPU, against ~1 ms for RSA-2048.
package devca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names in the data folder.
const (
	CAFile         = "ca.pem"     // the CA certificate devices trust
	CAKeyFile      = "ca.key"     // its private key, mode 0600
	ServerCertFile = "bridge.pem" // the bridge's certificate chain
	ServerKeyFile  = "bridge.key" // its private key, mode 0600
	validity       = 10 * 365 * 24 * time.Hour
	serverValidity = 2 * 365 * 24 * time.Hour
)

// Files are the paths of a data folder's CA and server certificate.
type Files struct {
	CA, CAKey, ServerCert, ServerKey string
	// Created is true when Ensure made them on this call.
	Created bool
}

// Ensure returns the CA and server certificate files of dir, making them
// on first use (dir is created 0700). A second call reuses them. hosts are
// the names and addresses the server certificate is valid for; nil means
// localhost and 127.0.0.1.
func Ensure(dir string, hosts []string) (Files, error) {
	f := Files{
		CA:         filepath.Join(dir, CAFile),
		CAKey:      filepath.Join(dir, CAKeyFile),
		ServerCert: filepath.Join(dir, ServerCertFile),
		ServerKey:  filepath.Join(dir, ServerKeyFile),
	}
	if hosts == nil {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	switch _, err := os.Stat(f.ServerCert); {
	case err == nil:
		if _, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey); err != nil {
			return f, fmt.Errorf("the bridge certificate in %s cannot be used: %w (remove %s and %s to make new ones)", dir, err, ServerCertFile, ServerKeyFile)
		}
		return f, nil
	case !errors.Is(err, fs.ErrNotExist):
		return f, fmt.Errorf("read %s: %w", f.ServerCert, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, fmt.Errorf("create the data folder %s: %w", dir, err)
	}
	caCert, caKey, err := loadOrMakeCA(f)
	if err != nil {
		return f, err
	}
	if err := makeServer(f, caCert, caKey, hosts); err != nil {
		return f, err
	}
	f.Created = true
	return f, nil
}

func loadOrMakeCA(f Files) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if certPEM, err := os.ReadFile(f.CA); err == nil {
		keyPEM, err := os.ReadFile(f.CAKey)
		if err != nil {
			return nil, nil, fmt.Errorf("the CA key of %s: %w", f.CA, err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("the CA in %s cannot be used: %w", f.CA, err)
		}
		key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
		if !ok {
			return nil, nil, fmt.Errorf("the CA key %s is not an ECDSA key", f.CAKey)
		}
		cert, err := x509.ParseCertificate(pair.Certificate[0])
		return cert, key, err
	}
	cert, key, err := newCA()
	if err != nil {
		return nil, nil, err
	}
	if err := writeKey(f.CAKey, key); err != nil {
		return nil, nil, err
	}
	if err := writePEM(f.CA, 0o644, "CERTIFICATE", cert.Raw); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func newCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Passerelle development CA", Organization: []string{"Passerelle"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func makeServer(f Files, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string) error {
	der, key, err := issueServer(ca, caKey, hosts)
	if err != nil {
		return err
	}
	if err := writeKey(f.ServerKey, key); err != nil {
		return err
	}
	return writePEM(f.ServerCert, 0o644, "CERTIFICATE", der)
}

// Ephemeral makes a CA and a server certificate for hosts in memory, for
// tests and throwaway servers: server serves with the certificate, client
// trusts the CA.
func Ephemeral(hosts ...string) (server, client *tls.Config, err error) {
	ca, caKey, err := newCA()
	if err != nil {
		return nil, nil, err
	}
	der, key, err := issueServer(ca, caKey, hosts)
	if err != nil {
		return nil, nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	server = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	return server, &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}, nil
}

// issueServer makes a server key and its certificate for hosts, signed by ca.
func issueServer(ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"Passerelle"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(serverValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	return der, key, err
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, 0o600, "PRIVATE KEY", der)
}

func writePEM(path string, mode os.FileMode, typ string, der []byte) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := pem.Encode(out, &pem.Block{Type: typ, Bytes: der}); err != nil {
		out.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return out.Close()
}
