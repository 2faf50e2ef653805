package deviceauth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"sync"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/deviceauth"
)

func ecPEMs(t testing.TB, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&k.PublicKey)))
	}
	return out
}

func TestKeyCacheHitsShareTheKey(t *testing.T) {
	f := getFixture()
	c := deviceauth.NewKeyCache(8)
	k1, err := c.Parse(deviceauth.FormatRSAX509PEM, f.leafRSA.pem)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := c.Parse(deviceauth.FormatRSAX509PEM, f.leafRSA.pem)
	if err != nil {
		t.Fatal(err)
	}
	if k1 != k2 {
		t.Error("second Parse did not return the cached key")
	}
	// The same text under another format is another entry, and here an error.
	if _, err := c.Parse(deviceauth.FormatES256X509PEM, f.leafRSA.pem); !errors.Is(err, deviceauth.ErrInvalidCredential) {
		t.Errorf("wrong format through the cache: err = %v", err)
	}
	if n := c.Len(); n != 1 {
		t.Errorf("Len = %d, want 1 (errors are not cached)", n)
	}
}

func TestKeyCacheIsBounded(t *testing.T) {
	const size = 6
	pems := ecPEMs(t, 20)
	c := deviceauth.NewKeyCache(size)
	for _, p := range pems {
		if _, err := c.Parse(deviceauth.FormatES256PEM, p); err != nil {
			t.Fatal(err)
		}
		if n := c.Len(); n > size {
			t.Fatalf("Len = %d, more than the size %d", n, size)
		}
	}
	// The most recent entry is still there.
	last := pems[len(pems)-1]
	k1, _ := c.Parse(deviceauth.FormatES256PEM, last)
	k2, _ := c.Parse(deviceauth.FormatES256PEM, last)
	if k1 != k2 {
		t.Error("most recent key was evicted")
	}
}

func TestKeyCacheConcurrent(t *testing.T) {
	pems := ecPEMs(t, 10)
	c := deviceauth.NewKeyCache(4)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				p := pems[(g+i)%len(pems)]
				k, err := c.Parse(deviceauth.FormatES256PEM, p)
				if err != nil || k == nil {
					t.Errorf("Parse: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := c.Len(); n > 4 {
		t.Errorf("Len = %d after concurrent use, want at most 4", n)
	}
}

func BenchmarkKeyCacheHit(b *testing.B) {
	f := getFixture()
	c := deviceauth.NewKeyCache(0)
	if _, err := c.Parse(deviceauth.FormatRSAX509PEM, f.leafRSA.pem); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Parse(deviceauth.FormatRSAX509PEM, f.leafRSA.pem); err != nil {
				b.Fatal(err)
			}
		}
	})
}
