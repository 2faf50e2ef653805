package deviceauth

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"time"

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

// verifyParser decodes tokens; claims are validated by Verify itself
// because the jwt package's validator would check nbf, which Cloud IoT
// ignored.
var verifyParser = jwt.NewParser(jwt.WithoutClaimsValidation())

// Verify checks a device JWT the way Cloud IoT Core did: header alg RS256
// or ES256 only (none, HS256 and every other alg are refused, so a token
// MACed with the public key's bytes never passes), a signature by one of
// keys (the caller passes only the device's unexpired credentials), iat,
// exp and aud present, aud equal to projectID, exp - iat at most
// MaxLifetime, iat not later than now + Skew, exp not earlier than now -
// Skew. nbf is ignored. Errors wrap ErrInvalidJWT.
func (p JWTPolicy) Verify(token string, keys []*Key, projectID string, now time.Time) (*DeviceClaims, error) {
	tok, parts, claims, err := parseDeviceJWT(token)
	if err != nil {
		return nil, err
	}
	wantRSA := tok.Method == jwt.SigningMethodRS256

	// Signature first: claims of an unsigned token are not worth reading.
	signed := parts[0] + "." + parts[1]
	var used *Key
	for _, k := range keys {
		if k == nil {
			continue
		}
		switch pub := k.Public.(type) {
		case *rsa.PublicKey:
			if wantRSA && jwt.SigningMethodRS256.Verify(signed, tok.Signature, pub) == nil {
				used = k
			}
		case *ecdsa.PublicKey:
			if !wantRSA && jwt.SigningMethodES256.Verify(signed, tok.Signature, pub) == nil {
				used = k
			}
		}
		if used != nil {
			break
		}
	}
	if used == nil {
		return nil, fmt.Errorf("%w: the %s signature matches none of the device's %d unexpired credential(s)", ErrInvalidJWT, tok.Method.Alg(), len(keys))
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
	_, _, claims, err := parseDeviceJWT(token)
	if err != nil {
		return err
	}
	_, err = p.checkClaims(claims, projectID, now)
	return err
}

// parseDeviceJWT decodes a token without verifying it and checks its
// size and alg (RS256 or ES256 only).
func parseDeviceJWT(token string) (*jwt.Token, []string, *jwt.RegisteredClaims, error) {
	if token == "" {
		return nil, nil, nil, fmt.Errorf("%w: empty token", ErrInvalidJWT)
	}
	if len(token) > maxJWTBytes {
		return nil, nil, nil, fmt.Errorf("%w: token of %d bytes, at most %d allowed", ErrInvalidJWT, len(token), maxJWTBytes)
	}
	var claims jwt.RegisteredClaims
	tok, parts, err := verifyParser.ParseUnverified(token, &claims)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrInvalidJWT, err)
	}
	alg, _ := tok.Header["alg"].(string)
	switch alg {
	case "RS256":
		tok.Method = jwt.SigningMethodRS256
	case "ES256":
		tok.Method = jwt.SigningMethodES256
	default:
		return nil, nil, nil, fmt.Errorf("%w: alg %q is not allowed, use RS256 or ES256", ErrInvalidJWT, alg)
	}
	return tok, parts, &claims, nil
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
