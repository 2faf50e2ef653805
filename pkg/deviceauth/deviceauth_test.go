package deviceauth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/deviceauth"
)

// now is the fixed "current time" of the tests; certificates are made valid
// around it.
var now = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

type certPair struct {
	cert *x509.Certificate
	pem  string
}

// fixture holds the keys and certificates every test uses. RSA key
// generation is slow (especially under -race), so it is built once.
type fixture struct {
	rsaKey, rsaKey2 *rsa.PrivateKey
	ecKey, ecKey2   *ecdsa.PrivateKey
	p384Key         *ecdsa.PrivateKey
	rsa1024Pub      *rsa.PublicKey

	rsaPKIX, rsaPKCS1, ecPKIX, p384PKIX, rsa1024PKIX string

	caRSA, caEC, caExpired, caNotCA, caP384, caRSA1024 certPair
	intermediate                                       certPair

	selfRSA, selfEC, selfP384 certPair
	leafRSA                   certPair // RSA key, signed by caRSA
	leafEC                    certPair // EC key, signed by caEC
	leafViaIntermediate       certPair // signed by intermediate (itself signed by caRSA)
	leafExpired               certPair // signed by caRSA, expired
	leafNotYetValid           certPair // signed by caRSA
	leafOfExpiredCA           certPair // valid itself, signed by caExpired
}

var getFixture = sync.OnceValue(buildFixture)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func makeCert(subject string, isCA bool, notBefore, notAfter time.Time, pub crypto.PublicKey, parent *x509.Certificate, signer crypto.Signer) certPair {
	tmpl := &x509.Certificate{
		SerialNumber:          must(rand.Int(rand.Reader, big.NewInt(1<<62))),
		Subject:               pkix.Name{CommonName: subject},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	if parent == nil {
		parent = tmpl
	}
	der := must(x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer))
	return certPair{cert: must(x509.ParseCertificate(der)), pem: pemOf("CERTIFICATE", der)}
}

func buildFixture() *fixture {
	f := &fixture{
		rsaKey:  must(rsa.GenerateKey(rand.Reader, 2048)),
		rsaKey2: must(rsa.GenerateKey(rand.Reader, 2048)),
		ecKey:   must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)),
		ecKey2:  must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)),
		p384Key: must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)),
	}
	// crypto/rsa refuses to generate 1024-bit keys nowadays; a public key
	// only needs a 1024-bit modulus to be parsed and refused.
	n := must(rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 1023)))
	n.SetBit(n, 1023, 1).SetBit(n, 0, 1)
	f.rsa1024Pub = &rsa.PublicKey{N: n, E: 65537}

	f.rsaPKIX = pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&f.rsaKey.PublicKey)))
	f.rsaPKCS1 = pemOf("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&f.rsaKey.PublicKey))
	f.ecPKIX = pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&f.ecKey.PublicKey)))
	f.p384PKIX = pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&f.p384Key.PublicKey)))
	f.rsa1024PKIX = pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(f.rsa1024Pub)))

	long := [2]time.Time{now.Add(-24 * time.Hour), now.Add(365 * 24 * time.Hour)}
	f.caRSA = makeCert("ca-rsa", true, long[0], long[1], &f.rsaKey2.PublicKey, nil, f.rsaKey2)
	f.caEC = makeCert("ca-ec", true, long[0], long[1], &f.ecKey2.PublicKey, nil, f.ecKey2)
	f.caExpired = makeCert("ca-expired", true, now.Add(-48*time.Hour), now.Add(-time.Hour), &f.ecKey2.PublicKey, nil, f.ecKey2)
	f.caNotCA = makeCert("not-a-ca", false, long[0], long[1], &f.ecKey2.PublicKey, nil, f.ecKey2)
	f.caP384 = makeCert("ca-p384", true, long[0], long[1], &f.p384Key.PublicKey, nil, f.p384Key)
	f.caRSA1024 = makeCert("ca-rsa1024", true, long[0], long[1], f.rsa1024Pub, nil, f.rsaKey2)

	f.intermediate = makeCert("intermediate", true, long[0], long[1], &f.ecKey.PublicKey, f.caRSA.cert, f.rsaKey2)

	f.selfRSA = makeCert("self-rsa", false, long[0], long[1], &f.rsaKey.PublicKey, nil, f.rsaKey)
	f.selfEC = makeCert("self-ec", false, long[0], long[1], &f.ecKey.PublicKey, nil, f.ecKey)
	f.selfP384 = makeCert("self-p384", false, long[0], long[1], &f.p384Key.PublicKey, nil, f.p384Key)
	f.leafRSA = makeCert("leaf-rsa", false, long[0], long[1], &f.rsaKey.PublicKey, f.caRSA.cert, f.rsaKey2)
	f.leafEC = makeCert("leaf-ec", false, long[0], long[1], &f.ecKey.PublicKey, f.caEC.cert, f.ecKey2)
	f.leafViaIntermediate = makeCert("leaf-via-intermediate", false, long[0], long[1], &f.ecKey2.PublicKey, f.intermediate.cert, f.ecKey)
	f.leafExpired = makeCert("leaf-expired", false, now.Add(-48*time.Hour), now.Add(-time.Minute), &f.rsaKey.PublicKey, f.caRSA.cert, f.rsaKey2)
	f.leafNotYetValid = makeCert("leaf-future", false, now.Add(time.Hour), long[1], &f.rsaKey.PublicKey, f.caRSA.cert, f.rsaKey2)
	f.leafOfExpiredCA = makeCert("leaf-of-expired-ca", false, long[0], long[1], &f.ecKey.PublicKey, f.caExpired.cert, f.ecKey2)
	return f
}

func TestParseCredential(t *testing.T) {
	f := getFixture()
	const (
		rsaX509   = deviceauth.FormatRSAX509PEM
		es256     = deviceauth.FormatES256PEM
		rsaPEM    = deviceauth.FormatRSAPEM
		es256X509 = deviceauth.FormatES256X509PEM
	)
	tests := []struct {
		name    string
		format  int32
		pem     string
		wantErr string // substring; "" means success
		wantRSA bool
		hasCert bool
	}{
		{name: "RSA_PEM PKIX", format: rsaPEM, pem: f.rsaPKIX, wantRSA: true},
		{name: "RSA_PEM PKCS1", format: rsaPEM, pem: f.rsaPKCS1, wantRSA: true},
		{name: "RSA_PEM CRLF and spaces", format: rsaPEM, pem: "\n  " + strings.ReplaceAll(f.rsaPKIX, "\n", "\r\n") + "\n\n", wantRSA: true},
		{name: "RSA_PEM 1024 bits", format: rsaPEM, pem: f.rsa1024PKIX, wantErr: "1024 bits, at least 2048"},
		{name: "RSA_PEM holding EC key", format: rsaPEM, pem: f.ecPKIX, wantErr: "needs an RSA key"},
		{name: "RSA_PEM given certificate", format: rsaPEM, pem: f.selfRSA.pem, wantErr: "use RSA_X509_PEM or ES256_X509_PEM"},
		{name: "ES256_PEM", format: es256, pem: f.ecPKIX},
		{name: "ES256_PEM P-384", format: es256, pem: f.p384PKIX, wantErr: "P-384, ES256 needs P-256"},
		{name: "ES256_PEM holding RSA key", format: es256, pem: f.rsaPKIX, wantErr: "needs an ECDSA P-256 key"},
		{name: "ES256_PEM PKCS1 block", format: es256, pem: f.rsaPKCS1, wantErr: `"RSA PUBLIC KEY", want "PUBLIC KEY"`},
		{name: "RSA_X509_PEM self-signed", format: rsaX509, pem: f.selfRSA.pem, wantRSA: true, hasCert: true},
		{name: "RSA_X509_PEM CA-signed", format: rsaX509, pem: f.leafRSA.pem, wantRSA: true, hasCert: true},
		{name: "RSA_X509_PEM expired still parses", format: rsaX509, pem: f.leafExpired.pem, wantRSA: true, hasCert: true},
		{name: "RSA_X509_PEM holding EC cert", format: rsaX509, pem: f.selfEC.pem, wantErr: "needs an RSA key"},
		{name: "RSA_X509_PEM given bare key", format: rsaX509, pem: f.rsaPKIX, wantErr: "use RSA_PEM or ES256_PEM"},
		{name: "RSA_X509_PEM 1024-bit cert", format: rsaX509, pem: f.caRSA1024.pem, wantErr: "at least 2048"},
		{name: "ES256_X509_PEM", format: es256X509, pem: f.selfEC.pem, hasCert: true},
		{name: "ES256_X509_PEM CA-signed", format: es256X509, pem: f.leafEC.pem, hasCert: true},
		{name: "ES256_X509_PEM holding RSA cert", format: es256X509, pem: f.selfRSA.pem, wantErr: "needs an ECDSA P-256 key"},
		{name: "ES256_X509_PEM P-384 cert", format: es256X509, pem: f.selfP384.pem, wantErr: "ES256 needs P-256"},
		{name: "format 0", format: 0, pem: f.rsaPKIX, wantErr: "unspecified"},
		{name: "format unknown", format: 7, pem: f.rsaPKIX, wantErr: "unknown public key format 7"},
		{name: "empty", format: rsaPEM, pem: "  \n", wantErr: "empty PEM"},
		{name: "not PEM", format: rsaPEM, pem: "ssh-rsa AAAAB3NzaC1yc2E", wantErr: "not PEM"},
		{name: "two blocks", format: rsaPEM, pem: f.rsaPKIX + f.rsaPKIX, wantErr: "more than one PEM block"},
		{name: "trailing garbage", format: rsaPEM, pem: f.rsaPKIX + "garbage", wantErr: "text after the PEM block"},
		{name: "leading garbage", format: rsaX509, pem: "Certificate:\n  Data: ...\n" + f.selfRSA.pem, wantErr: "text before the PEM block"},
		{name: "private key", format: es256, pem: pemOf("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(f.ecKey))), wantErr: "this is a private key"},
		{name: "bad base64", format: rsaPEM, pem: "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n", wantErr: "malformed PEM"},
		{name: "bad DER", format: rsaPEM, pem: pemOf("PUBLIC KEY", []byte("not DER")), wantErr: "bad public key"},
		{name: "bad certificate DER", format: rsaX509, pem: pemOf("CERTIFICATE", []byte("not DER")), wantErr: "bad certificate"},
		{name: "too long", format: rsaPEM, pem: strings.Repeat(" ", 70000) + f.rsaPKIX, wantErr: "more than the"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := deviceauth.ParseCredential(tt.format, tt.pem)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseCredential succeeded, want error containing %q", tt.wantErr)
				}
				if !errors.Is(err, deviceauth.ErrInvalidCredential) {
					t.Errorf("error %v does not wrap ErrInvalidCredential", err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCredential: %v", err)
			}
			if k.Format != tt.format {
				t.Errorf("Format = %d, want %d", k.Format, tt.format)
			}
			if _, isRSA := k.Public.(*rsa.PublicKey); isRSA != tt.wantRSA {
				t.Errorf("Public is %T, want RSA = %v", k.Public, tt.wantRSA)
			}
			if (k.Cert != nil) != tt.hasCert {
				t.Errorf("Cert = %v, want a certificate: %v", k.Cert != nil, tt.hasCert)
			}
		})
	}
}

func TestParseCACertificate(t *testing.T) {
	f := getFixture()
	tests := []struct {
		name, pem, wantErr string
	}{
		{name: "RSA CA", pem: f.caRSA.pem},
		{name: "EC CA", pem: f.caEC.pem},
		{name: "expired CA parses", pem: f.caExpired.pem},
		{name: "not a CA", pem: f.caNotCA.pem, wantErr: "is not a CA certificate"},
		{name: "P-384 CA", pem: f.caP384.pem, wantErr: "P-256"},
		{name: "RSA 1024 CA", pem: f.caRSA1024.pem, wantErr: "at least 2048"},
		{name: "bare key", pem: f.rsaPKIX, wantErr: `want "CERTIFICATE"`},
		{name: "two certificates", pem: f.caRSA.pem + f.caEC.pem, wantErr: "more than one PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := deviceauth.ParseCACertificate(tt.pem)
			if tt.wantErr == "" {
				if err != nil || c == nil {
					t.Fatalf("ParseCACertificate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, deviceauth.ErrInvalidCredential) {
				t.Fatalf("error = %v, want ErrInvalidCredential containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckSignedByRegistry(t *testing.T) {
	f := getFixture()
	parse := func(format int32, p string) *deviceauth.Key {
		t.Helper()
		k, err := deviceauth.ParseCredential(format, p)
		if err != nil {
			t.Fatalf("ParseCredential: %v", err)
		}
		return k
	}
	rsaX509, es256X509 := deviceauth.FormatRSAX509PEM, deviceauth.FormatES256X509PEM
	both := []*x509.Certificate{f.caRSA.cert, f.caEC.cert}
	tests := []struct {
		name    string
		key     *deviceauth.Key
		cas     []*x509.Certificate
		wantErr string
	}{
		{name: "no CAs, bare key", key: parse(deviceauth.FormatES256PEM, f.ecPKIX)},
		{name: "no CAs, self-signed", key: parse(rsaX509, f.selfRSA.pem)},
		{name: "no CAs, expired", key: parse(rsaX509, f.leafExpired.pem)},
		{name: "bare key refused", key: parse(deviceauth.FormatRSAPEM, f.rsaPKIX), cas: both, wantErr: "must be X.509 certificates"},
		{name: "signed by RSA CA", key: parse(rsaX509, f.leafRSA.pem), cas: both},
		{name: "signed by EC CA", key: parse(es256X509, f.leafEC.pem), cas: both},
		{name: "signed by other CA", key: parse(es256X509, f.leafEC.pem), cas: []*x509.Certificate{f.caRSA.cert}, wantErr: "not signed directly"},
		{name: "self-signed refused", key: parse(rsaX509, f.selfRSA.pem), cas: both, wantErr: "not signed directly"},
		{name: "intermediate refused", key: parse(es256X509, f.leafViaIntermediate.pem), cas: both, wantErr: "not signed directly"},
		{name: "expired certificate", key: parse(rsaX509, f.leafExpired.pem), cas: both, wantErr: "device certificate \"CN=leaf-expired\" expired"},
		{name: "not yet valid", key: parse(rsaX509, f.leafNotYetValid.pem), cas: both, wantErr: "not valid before"},
		{name: "expired CA", key: parse(es256X509, f.leafOfExpiredCA.pem), cas: []*x509.Certificate{f.caExpired.cert}, wantErr: "signing CA certificate \"CN=ca-expired\" expired"},
		{name: "nil key", key: nil, cas: both, wantErr: "must be X.509"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := deviceauth.CheckSignedByRegistry(tt.key, tt.cas, now)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckSignedByRegistry: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, deviceauth.ErrNotSignedByRegistry) {
				t.Fatalf("error = %v, want ErrNotSignedByRegistry containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDetails(t *testing.T) {
	f := getFixture()
	d := deviceauth.Details(f.leafRSA.cert)
	want := deviceauth.CertificateDetails{
		Issuer:             "CN=ca-rsa",
		Subject:            "CN=leaf-rsa",
		StartTime:          now.Add(-24 * time.Hour),
		ExpiryTime:         now.Add(365 * 24 * time.Hour),
		SignatureAlgorithm: "SHA256-RSA",
		PublicKeyType:      "RSA",
	}
	if !d.StartTime.Equal(want.StartTime) || !d.ExpiryTime.Equal(want.ExpiryTime) {
		t.Errorf("times = %v..%v, want %v..%v", d.StartTime, d.ExpiryTime, want.StartTime, want.ExpiryTime)
	}
	d.StartTime, d.ExpiryTime = want.StartTime, want.ExpiryTime
	if d != want {
		t.Errorf("Details = %+v, want %+v", d, want)
	}
	if got := deviceauth.Details(f.leafEC.cert); got.PublicKeyType != "ECDSA" || got.SignatureAlgorithm != "ECDSA-SHA256" {
		t.Errorf("EC details = %+v", got)
	}
}

func TestFormatName(t *testing.T) {
	for format, want := range map[int32]string{0: "UNSPECIFIED_PUBLIC_KEY_FORMAT", 1: "RSA_X509_PEM", 2: "ES256_PEM", 3: "RSA_PEM", 4: "ES256_X509_PEM", 9: "PublicKeyFormat(9)"} {
		if got := deviceauth.FormatName(format); got != want {
			t.Errorf("FormatName(%d) = %q, want %q", format, got, want)
		}
	}
}

func FuzzParseCredential(f *testing.F) {
	fx := getFixture()
	for format, p := range map[int32]string{
		deviceauth.FormatRSAPEM:       fx.rsaPKCS1,
		deviceauth.FormatES256PEM:     fx.ecPKIX,
		deviceauth.FormatRSAX509PEM:   fx.leafRSA.pem,
		deviceauth.FormatES256X509PEM: fx.leafEC.pem,
	} {
		f.Add(format, p)
		f.Add(format, p[:len(p)/2])
	}
	f.Add(int32(2), "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")
	f.Fuzz(func(t *testing.T, format int32, p string) {
		k, err := deviceauth.ParseCredential(format, p)
		if err != nil {
			if k != nil || !errors.Is(err, deviceauth.ErrInvalidCredential) {
				t.Fatalf("error %v with key %v", err, k)
			}
			return
		}
		switch pub := k.Public.(type) {
		case *rsa.PublicKey:
			if format != deviceauth.FormatRSAPEM && format != deviceauth.FormatRSAX509PEM {
				t.Fatalf("RSA key accepted for format %d", format)
			}
			if pub.N.BitLen() < deviceauth.MinRSABits {
				t.Fatalf("%d-bit RSA key accepted", pub.N.BitLen())
			}
		case *ecdsa.PublicKey:
			if format != deviceauth.FormatES256PEM && format != deviceauth.FormatES256X509PEM {
				t.Fatalf("EC key accepted for format %d", format)
			}
			if pub.Curve != elliptic.P256() {
				t.Fatalf("curve %s accepted", pub.Curve.Params().Name)
			}
		default:
			t.Fatalf("key of type %T accepted", k.Public)
		}
		isX509 := format == deviceauth.FormatRSAX509PEM || format == deviceauth.FormatES256X509PEM
		if (k.Cert != nil) != isX509 {
			t.Fatalf("format %d: Cert = %v", format, k.Cert)
		}
	})
}

func BenchmarkParseCredential(b *testing.B) {
	f := getFixture()
	for _, bc := range []struct {
		name   string
		format int32
		pem    string
	}{
		{"RSA_X509_PEM", deviceauth.FormatRSAX509PEM, f.leafRSA.pem},
		{"ES256_X509_PEM", deviceauth.FormatES256X509PEM, f.leafEC.pem},
		{"RSA_PEM", deviceauth.FormatRSAPEM, f.rsaPKIX},
		{"ES256_PEM", deviceauth.FormatES256PEM, f.ecPKIX},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := deviceauth.ParseCredential(bc.format, bc.pem); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
