package deviceauth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/passerelle-iot/passerelle/pkg/deviceauth"
)

type jwtKeys struct {
	rsaPriv *rsa.PrivateKey
	ecPriv  *ecdsa.PrivateKey
	rsaKey  *deviceauth.Key
	ecKey   *deviceauth.Key
	rsaPEM  string
	other   *ecdsa.PrivateKey
}

var jwtFixture = func() *jwtKeys {
	k := &jwtKeys{
		rsaPriv: must(rsa.GenerateKey(rand.Reader, 2048)),
		ecPriv:  must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)),
		other:   must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)),
	}
	k.rsaPEM = pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&k.rsaPriv.PublicKey)))
	k.rsaKey = must(deviceauth.ParseCredential(deviceauth.FormatRSAPEM, k.rsaPEM))
	k.ecKey = must(deviceauth.ParseCredential(deviceauth.FormatES256PEM,
		pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&k.ecPriv.PublicKey)))))
	return k
}()

func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func stdClaims(iat, exp time.Time, aud any) jwt.MapClaims {
	return jwt.MapClaims{"iat": iat.Unix(), "exp": exp.Unix(), "aud": aud}
}

func TestVerifyDeviceJWT(t *testing.T) {
	k := jwtFixture
	const project = "my-project"
	good := stdClaims(now.Add(-time.Minute), now.Add(time.Hour), project)
	both := []*deviceauth.Key{k.rsaKey, k.ecKey}

	tests := []struct {
		name  string
		token string
		keys  []*deviceauth.Key
		want  *deviceauth.Key // nil: must fail
	}{
		{"RS256 happy path", sign(t, jwt.SigningMethodRS256, k.rsaPriv, good), both, k.rsaKey},
		{"ES256 P-256 happy path", sign(t, jwt.SigningMethodES256, k.ecPriv, good), both, k.ecKey},
		{"aud as a one-element array", sign(t, jwt.SigningMethodES256, k.ecPriv, stdClaims(now, now.Add(time.Hour), []string{project})), both, k.ecKey},
		{"nbf in the future is ignored", sign(t, jwt.SigningMethodES256, k.ecPriv, jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "aud": project, "nbf": now.Add(5 * time.Hour).Unix()}), both, k.ecKey},
		{"iat within the skew", sign(t, jwt.SigningMethodES256, k.ecPriv, stdClaims(now.Add(9*time.Minute), now.Add(time.Hour), project)), both, k.ecKey},
		{"exp within the skew", sign(t, jwt.SigningMethodES256, k.ecPriv, stdClaims(now.Add(-time.Hour), now.Add(-9*time.Minute), project)), both, k.ecKey},
		{"lifetime of exactly 24 h", sign(t, jwt.SigningMethodES256, k.ecPriv, stdClaims(now.Add(-time.Hour), now.Add(23*time.Hour), project)), both, k.ecKey},

		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good), both, nil},
		{"HS256 with the public key bytes", sign(t, jwt.SigningMethodHS256, []byte(k.rsaPEM), good), both, nil},
		{"RS384", sign(t, jwt.SigningMethodRS384, k.rsaPriv, good), both, nil},
		{"PS256", sign(t, jwt.SigningMethodPS256, k.rsaPriv, good), both, nil},
		{"wrong audience", sign(t, jwt.SigningMethodRS256, k.rsaPriv, stdClaims(now, now.Add(time.Hour), "other-project")), both, nil},
		{"audience prefix", sign(t, jwt.SigningMethodRS256, k.rsaPriv, stdClaims(now, now.Add(time.Hour), "my-project-2")), both, nil},
		{"two audiences", sign(t, jwt.SigningMethodRS256, k.rsaPriv, stdClaims(now, now.Add(time.Hour), []string{project, "x"})), both, nil},
		{"expired", sign(t, jwt.SigningMethodRS256, k.rsaPriv, stdClaims(now.Add(-2*time.Hour), now.Add(-11*time.Minute), project)), both, nil},
		{"issued in the future", sign(t, jwt.SigningMethodRS256, k.rsaPriv, stdClaims(now.Add(11*time.Minute), now.Add(time.Hour), project)), both, nil},
		{"lifetime over 24 h", sign(t, jwt.SigningMethodRS256, k.rsaPriv, stdClaims(now.Add(-time.Hour), now.Add(23*time.Hour+time.Second), project)), both, nil},
		{"missing iat", sign(t, jwt.SigningMethodRS256, k.rsaPriv, jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "aud": project}), both, nil},
		{"missing exp", sign(t, jwt.SigningMethodRS256, k.rsaPriv, jwt.MapClaims{"iat": now.Unix(), "aud": project}), both, nil},
		{"missing aud", sign(t, jwt.SigningMethodRS256, k.rsaPriv, jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}), both, nil},
		{"key not the device's", sign(t, jwt.SigningMethodES256, k.other, good), both, nil},
		{"ES256 token, device has only RSA", sign(t, jwt.SigningMethodES256, k.ecPriv, good), []*deviceauth.Key{k.rsaKey}, nil},
		// The caller drops expired credentials (CredentialActive), so an
		// expired key never reaches Verify.
		{"expired credential", sign(t, jwt.SigningMethodES256, k.ecPriv, good), activeKeys(k.ecKey, now.Add(-time.Second)), nil},
		{"garbage", "not.a.jwt", both, nil},
		{"empty", "", both, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := deviceauth.VerifyDeviceJWT(tc.token, tc.keys, project, now)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("accepted, want refusal")
				}
				if !errors.Is(err, deviceauth.ErrInvalidJWT) {
					t.Fatalf("error %v does not wrap ErrInvalidJWT", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if c.Key != tc.want {
				t.Errorf("verified by the wrong key")
			}
			if c.Audience != project || c.ExpiresAt.IsZero() || c.IssuedAt.IsZero() {
				t.Errorf("claims %+v", c)
			}
		})
	}
}

// activeKeys is what a caller does with a credential's expiration time.
func activeKeys(k *deviceauth.Key, expiration time.Time) []*deviceauth.Key {
	if deviceauth.CredentialActive(expiration, now) {
		return []*deviceauth.Key{k}
	}
	return nil
}

func TestJWTPolicySkew(t *testing.T) {
	k := jwtFixture
	tok := sign(t, jwt.SigningMethodES256, k.ecPriv, stdClaims(now.Add(-time.Hour), now.Add(-5*time.Second), "p"))
	keys := []*deviceauth.Key{k.ecKey}
	if _, err := (deviceauth.JWTPolicy{Skew: time.Second}).Verify(tok, keys, "p", now); err == nil {
		t.Fatal("a 1 s skew accepted a token expired 5 s ago")
	}
	c, err := (deviceauth.JWTPolicy{Skew: time.Minute}).Verify(tok, keys, "p", now)
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(-5 * time.Second); !c.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt %v, want %v", c.ExpiresAt, want)
	}
}

// Precheck applies Verify's rules but the signature: a token signed by a
// key of no device passes; every other refusal of Verify is its refusal.
func TestJWTPolicyPrecheck(t *testing.T) {
	k := jwtFixture
	var p deviceauth.JWTPolicy
	if err := p.Precheck(sign(t, jwt.SigningMethodES256, k.other, stdClaims(now, now.Add(time.Hour), "p")), "p", now); err != nil {
		t.Errorf("a well-formed token signed by an unknown key: %v", err)
	}
	for _, tc := range []struct{ name, token, want string }{
		{"empty", "", "empty token"},
		{"garbage", "abc", "invalid device JWT"},
		{"HS256", sign(t, jwt.SigningMethodHS256, []byte("secret"), stdClaims(now, now.Add(time.Hour), "p")), `alg "HS256"`},
		{"wrong aud", sign(t, jwt.SigningMethodES256, k.other, stdClaims(now, now.Add(time.Hour), "q")), "aud"},
		{"expired", sign(t, jwt.SigningMethodES256, k.other, stdClaims(now.Add(-2*time.Hour), now.Add(-time.Hour), "p")), "expired"},
		{"too long", sign(t, jwt.SigningMethodES256, k.other, stdClaims(now, now.Add(25*time.Hour), "p")), "lifetime"},
		{"no iat", sign(t, jwt.SigningMethodES256, k.other, jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "aud": "p"}), "iat"},
	} {
		err := p.Precheck(tc.token, "p", now)
		if !errors.Is(err, deviceauth.ErrInvalidJWT) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalidJWT saying %q", tc.name, err, tc.want)
		}
	}
}

func BenchmarkVerifyDeviceJWT(b *testing.B) {
	k := jwtFixture
	claims := stdClaims(now, now.Add(time.Hour), "p")
	for _, bc := range []struct {
		name string
		tok  string
	}{
		{"RS256", sign(b, jwt.SigningMethodRS256, k.rsaPriv, claims)},
		{"ES256", sign(b, jwt.SigningMethodES256, k.ecPriv, claims)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			keys := []*deviceauth.Key{k.rsaKey, k.ecKey}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := deviceauth.VerifyDeviceJWT(bc.tok, keys, "p", now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseDeviceJWT is the decode step of a connect alone: the
// token's header and claims checked, no signature (Precheck).
func BenchmarkParseDeviceJWT(b *testing.B) {
	tok := sign(b, jwt.SigningMethodRS256, jwtFixture.rsaPriv, stdClaims(now, now.Add(time.Hour), "p"))
	b.ReportAllocs()
	for b.Loop() {
		if err := (deviceauth.JWTPolicy{}).Precheck(tok, "p", now); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzPrecheckAgainstJWTParser: the decoder of Verify and Precheck never
// accepts a token that golang-jwt's parser (which it replaced) refuses,
// but for a header whose "alg" key is spelled in another case (see
// parseDeviceJWT).
func FuzzPrecheckAgainstJWTParser(f *testing.F) {
	k := jwtFixture
	f.Add(sign(f, jwt.SigningMethodRS256, k.rsaPriv, stdClaims(now, now.Add(time.Hour), "p")))
	f.Add(sign(f, jwt.SigningMethodES256, k.ecPriv, stdClaims(now, now.Add(time.Hour), []string{"p"})))
	f.Add(sign(f, jwt.SigningMethodHS256, []byte("k"), stdClaims(now, now.Add(time.Hour), "p")))
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJpYXQiOjEsImV4cCI6Mn0.c2ln")
	f.Add("a.b.c")
	old := jwt.NewParser(jwt.WithoutClaimsValidation())
	f.Fuzz(func(t *testing.T, token string) {
		if (deviceauth.JWTPolicy{}).Precheck(token, "p", now) != nil {
			return
		}
		var claims jwt.RegisteredClaims
		tok, _, err := old.ParseUnverified(token, &claims)
		if err != nil {
			var raw map[string]json.RawMessage
			if hdr, derr := base64.RawURLEncoding.DecodeString(strings.SplitN(token, ".", 2)[0]); derr == nil && json.Unmarshal(hdr, &raw) == nil {
				for key := range raw {
					if key != "alg" && strings.EqualFold(key, "alg") {
						return // the documented difference
					}
				}
			}
			t.Fatalf("accepted %q, which golang-jwt refuses: %v", token, err)
		}
		if alg, _ := tok.Header["alg"].(string); alg != "RS256" && alg != "ES256" {
			t.Fatalf("accepted %q with alg %q", token, alg)
		}
	})
}
