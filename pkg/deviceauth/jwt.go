package deviceauth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
)

// Device JWT rules of compat-spec section 6.
const (
	// DefaultJWTSkew is the clock skew allowed on iat and exp.
	DefaultJWTSkew = 10 * time.Minute
	// MaxJWTLifetime is the most exp - iat may be.
	MaxJWTLifetime = 24 * time.Hour
	// maxJWTBytes bounds the token: a device JWT is a few hundred bytes,
	// and decoding attacker-sized input before the signature check is
	// wasted work.
	maxJWTBytes = 8 << 10
)

// ErrInvalidJWT wraps every error of VerifyDeviceJWT. The bridge answers
// any of them with CONNACK 5 (not authorised); the wrapped text is for the
// log, not for the device.
var ErrInvalidJWT = errors.New("invalid device JWT")

// DeviceClaims are what a verified device JWT tells.
type DeviceClaims struct {
	// IssuedAt and ExpiresAt are the iat and exp claims.
	IssuedAt, ExpiresAt time.Time
	// Audience is the aud claim: the project id.
	Audience string
	// Key is the device key that verified the signature (one of the keys
	// given), so that a bridge can tell when a credential change removes
	// it.
	Key *Key
}

// JWTPolicy holds the tunable limits of device JWT verification. The zero
// value means DefaultJWTSkew and MaxJWTLifetime.
type JWTPolicy struct {
	// Skew is the clock skew allowed on iat (not after now + Skew) and exp
	// (not before now - Skew).
	Skew time.Duration
	// MaxLifetime is the most exp - iat may be.
	MaxLifetime time.Duration
}

// VerifyDeviceJWT verifies a device's MQTT password (or HTTP bearer token)
// with the default policy; see JWTPolicy.Verify.
func VerifyDeviceJWT(token string, keys []*Key, projectID string, now time.Time) (*DeviceClaims, error) {
	return JWTPolicy{}.Verify(token, keys, projectID, now)
}

// Verify checks a device JWT the way Cloud IoT Core did: header alg RS256
// or ES256 only (none, HS256 and every other alg are refused, so a token
// MACed with the public key's bytes never passes), a signature by one of
// keys (the caller passes only the device's unexpired credentials), iat,
// exp and aud present, aud equal to projectID, exp - iat at most
// MaxLifetime, iat not later than now + Skew, exp not earlier than now -
// Skew. nbf is ignored. Errors wrap ErrInvalidJWT.
func (p JWTPolicy) Verify(token string, keys []*Key, projectID string, now time.Time) (*DeviceClaims, error) {
	var sigBuf [512]byte // an RS256 signature of a 4096-bit key fits: no allocation
	t, err := parseDeviceJWT(token, sigBuf[:0])
	if err != nil {
		return nil, err
	}

	// Signature first: claims of an unsigned token are not worth reading.
	var used *Key
	var digest [sha256.Size]byte
	hashed := false
	for _, k := range keys {
		if k == nil {
			continue
		}
		switch pub := k.Public.(type) {
		case *rsa.PublicKey:
			if t.rsa {
				if !hashed {
					digest, hashed = sha256String(t.signed), true
				}
				// What jwt.SigningMethodRS256.Verify does, without its
				// hasher and copies.
				if rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], t.sig) == nil {
					used = k
				}
			}
		case *ecdsa.PublicKey:
			if !t.rsa && jwt.SigningMethodES256.Verify(t.signed, t.sig, pub) == nil {
				used = k
			}
		}
		if used != nil {
			break
		}
	}
	if used == nil {
		alg := "ES256"
		if t.rsa {
			alg = "RS256"
		}
		return nil, fmt.Errorf("%w: the %s signature matches none of the device's %d unexpired credential(s)", ErrInvalidJWT, alg, len(keys))
	}
	claims, err := t.claims()
	if err != nil {
		return nil, err
	}
	dc, err := p.checkClaims(claims, projectID, now)
	if err != nil {
		return nil, err
	}
	dc.Key = used
	return dc, nil
}

// Precheck applies every rule of Verify but the signature: the header's
// alg and the claims. It is for a front end that must know which device
// signed the token before it can pick the keys (the HTTP bridge, whose
// gatewayInfo is in the request body): a request whose token fails
// Precheck is refused before its body is read. A token that passes is not
// authenticated; Verify it. Errors wrap ErrInvalidJWT.
func (p JWTPolicy) Precheck(token, projectID string, now time.Time) error {
	var sigBuf [512]byte
	t, err := parseDeviceJWT(token, sigBuf[:0])
	if err != nil {
		return err
	}
	claims, err := t.claims()
	if err != nil {
		return err
	}
	_, err = p.checkClaims(claims, projectID, now)
	return err
}

// deviceJWT is a token split and decoded, not verified.
type deviceJWT struct {
	rsa     bool   // alg RS256; else ES256
	signed  string // header.payload, what the signature covers
	payload string // the claims segment, base64url
	sig     []byte // the decoded signature
}

// jwtHeader is the part of the JOSE header Verify reads.
type jwtHeader struct {
	Alg string `json:"alg"`
}

// parseDeviceJWT splits a token, decodes its header and signature (into
// sigBuf when it has room) and checks its size and alg (RS256 or ES256
// only). The claims are decoded only once the signature is good (claims).
//
// It reads what jwt.Parser.ParseUnverified reads (three base64url
// segments without padding, a JSON header), with a typed header rather
// than a map: a header whose "alg" is spelled in another case is read as
// "alg" here (encoding/json matches field names so). That changes only
// which of RS256 and ES256 the signature is checked with, by the
// device's own key, never whether one is checked.
func parseDeviceJWT(token string, sigBuf []byte) (deviceJWT, error) {
	if token == "" {
		return deviceJWT{}, fmt.Errorf("%w: empty token", ErrInvalidJWT)
	}
	if len(token) > maxJWTBytes {
		return deviceJWT{}, fmt.Errorf("%w: token of %d bytes, at most %d allowed", ErrInvalidJWT, len(token), maxJWTBytes)
	}
	i := strings.IndexByte(token, '.')
	j := strings.LastIndexByte(token, '.')
	if i < 0 || j == i || strings.IndexByte(token[i+1:j], '.') >= 0 {
		return deviceJWT{}, fmt.Errorf("%w: token is malformed: a JWT has three dot-separated segments", ErrInvalidJWT)
	}
	var hdrBuf [256]byte
	hdr, err := decodeSegment(hdrBuf[:0], token[:i])
	if err != nil {
		return deviceJWT{}, fmt.Errorf("%w: token is malformed: could not base64-decode the header: %v", ErrInvalidJWT, err)
	}
	var h jwtHeader
	if err := json.Unmarshal(hdr, &h); err != nil {
		return deviceJWT{}, fmt.Errorf("%w: token is malformed: could not JSON-decode the header: %v", ErrInvalidJWT, err)
	}
	t := deviceJWT{signed: token[:j], payload: token[i+1 : j]}
	switch h.Alg {
	case "RS256":
		t.rsa = true
	case "ES256":
	default:
		return deviceJWT{}, fmt.Errorf("%w: alg %q is not allowed, use RS256 or ES256", ErrInvalidJWT, h.Alg)
	}
	if t.sig, err = decodeSegment(sigBuf, token[j+1:]); err != nil {
		return deviceJWT{}, fmt.Errorf("%w: token is malformed: could not base64-decode the signature: %v", ErrInvalidJWT, err)
	}
	return t, nil
}

// jwtClaims are the registered claims, typed as jwt.RegisteredClaims
// decodes them (a NumericDate is a JSON number, or a string holding one;
// aud a string or an array of strings), without its per-field
// allocations. iss, sub, nbf and jti are read only to refuse the types
// golang-jwt refuses.
type jwtClaims struct {
	IssuedAt  json.Number     `json:"iat"`
	ExpiresAt json.Number     `json:"exp"`
	NotBefore json.Number     `json:"nbf"`
	Audience  json.RawMessage `json:"aud"`
	Issuer    string          `json:"iss"`
	Subject   string          `json:"sub"`
	ID        string          `json:"jti"`
}

// claims decodes the token's claims as jwt.Parser did.
func (t deviceJWT) claims() (*jwt.RegisteredClaims, error) {
	var buf [512]byte
	b, err := decodeSegment(buf[:0], t.payload)
	if err != nil {
		return nil, fmt.Errorf("%w: token is malformed: could not base64-decode the claims: %v", ErrInvalidJWT, err)
	}
	var c jwtClaims
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%w: token is malformed: could not JSON-decode the claims: %v", ErrInvalidJWT, err)
	}
	var rc jwt.RegisteredClaims
	for _, d := range []struct {
		name string
		n    json.Number
		dst  **jwt.NumericDate
	}{{"iat", c.IssuedAt, &rc.IssuedAt}, {"exp", c.ExpiresAt, &rc.ExpiresAt}, {"nbf", c.NotBefore, &rc.NotBefore}} {
		if d.n == "" {
			continue
		}
		f, err := d.n.Float64()
		if err != nil {
			return nil, fmt.Errorf("%w: token is malformed: claim %s is not a number: %v", ErrInvalidJWT, d.name, err)
		}
		// As jwt.NumericDate: seconds, to the second.
		sec, frac := math.Modf(f)
		*d.dst = jwt.NewNumericDate(time.Unix(int64(sec), int64(frac*1e9)))
	}
	switch a := bytes.TrimSpace(c.Audience); {
	case len(a) == 0 || string(a) == "null":
	case a[0] == '"':
		var one string
		if err := json.Unmarshal(a, &one); err != nil {
			return nil, fmt.Errorf("%w: token is malformed: claim aud: %v", ErrInvalidJWT, err)
		}
		rc.Audience = jwt.ClaimStrings{one}
	default:
		var many []*string // a null element is refused, as golang-jwt does
		if err := json.Unmarshal(a, &many); err != nil {
			return nil, fmt.Errorf("%w: token is malformed: claim aud is neither a string nor an array of strings: %v", ErrInvalidJWT, err)
		}
		for _, s := range many {
			if s == nil {
				return nil, fmt.Errorf("%w: token is malformed: claim aud holds a null", ErrInvalidJWT)
			}
			rc.Audience = append(rc.Audience, *s)
		}
	}
	return &rc, nil
}

// decodeSegment appends the base64url (unpadded) decoding of seg to dst,
// which is reused when it has room.
func decodeSegment(dst []byte, seg string) ([]byte, error) {
	n := base64.RawURLEncoding.DecodedLen(len(seg))
	if cap(dst) < n {
		dst = make([]byte, 0, n)
	}
	dst = dst[:n]
	m, err := base64.RawURLEncoding.Decode(dst, unsafe.Slice(unsafe.StringData(seg), len(seg)))
	if err != nil {
		return nil, err
	}
	return dst[:m], nil
}

// sha256String hashes s without copying it.
func sha256String(s string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// checkClaims applies the claim rules of Verify.
func (p JWTPolicy) checkClaims(claims *jwt.RegisteredClaims, projectID string, now time.Time) (*DeviceClaims, error) {
	skew, lifetime := p.Skew, p.MaxLifetime
	if skew <= 0 {
		skew = DefaultJWTSkew
	}
	if lifetime <= 0 {
		lifetime = MaxJWTLifetime
	}
	if claims.IssuedAt == nil {
		return nil, fmt.Errorf("%w: claim iat is required", ErrInvalidJWT)
	}
	if claims.ExpiresAt == nil {
		return nil, fmt.Errorf("%w: claim exp is required", ErrInvalidJWT)
	}
	if len(claims.Audience) == 0 {
		return nil, fmt.Errorf("%w: claim aud is required", ErrInvalidJWT)
	}
	if len(claims.Audience) != 1 || claims.Audience[0] != projectID {
		return nil, fmt.Errorf("%w: claim aud %q is not the project id %q", ErrInvalidJWT, []string(claims.Audience), projectID)
	}
	iat, exp := claims.IssuedAt.Time, claims.ExpiresAt.Time
	if exp.Sub(iat) > lifetime {
		return nil, fmt.Errorf("%w: lifetime exp - iat is %s, at most %s allowed", ErrInvalidJWT, exp.Sub(iat), lifetime)
	}
	if iat.After(now.Add(skew)) {
		return nil, fmt.Errorf("%w: issued in the future (iat %s, now %s)", ErrInvalidJWT, iat.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if exp.Before(now.Add(-skew)) {
		return nil, fmt.Errorf("%w: expired (exp %s, now %s)", ErrInvalidJWT, exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return &DeviceClaims{IssuedAt: iat, ExpiresAt: exp, Audience: projectID}, nil
}

// CredentialActive reports whether a credential with the given expiration
// time (zero: never expires) still authenticates at now. Callers keep only
// the active credentials' keys for Verify.
func CredentialActive(expiration, now time.Time) bool {
	return expiration.IsZero() || now.Before(expiration)
}
