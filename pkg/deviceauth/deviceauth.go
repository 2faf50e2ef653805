// Package deviceauth parses and checks device credentials the way Cloud IoT
// Core did (compat-spec section 3): the four public key formats, registry CA
// certificates and the "signed directly by a registry CA" rule. The manager
// uses it to validate credentials at device create/update; the bridge uses it
// (through KeyCache) to obtain the keys that verify device JWTs.
package deviceauth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Formats, numerically equal to iotpb.PublicKeyFormat.
const (
	// FormatRSAX509PEM is an X.509 certificate holding an RSA key (RSA_X509_PEM).
	FormatRSAX509PEM int32 = 1
	// FormatES256PEM is a bare PKIX ECDSA P-256 public key (ES256_PEM).
	FormatES256PEM int32 = 2
	// FormatRSAPEM is a bare RSA public key, PKIX or PKCS#1 (RSA_PEM).
	FormatRSAPEM int32 = 3
	// FormatES256X509PEM is an X.509 certificate holding a P-256 key (ES256_X509_PEM).
	FormatES256X509PEM int32 = 4
)

// Key size limits. The lower bound is Cloud IoT's; the upper bound is ours:
// verification cost grows with the modulus, and the bridge verifies a
// signature on every connect, so a device must not be able to make that
// arbitrarily expensive.
const (
	MinRSABits = 2048
	MaxRSABits = 8192
)

// maxPEMBytes bounds the input: a real certificate is a few KiB, and parsing
// attacker-sized input is wasted work.
const maxPEMBytes = 64 << 10

var (
	// ErrInvalidCredential wraps every error of ParseCredential and
	// ParseCACertificate: the manager maps it to INVALID_ARGUMENT.
	ErrInvalidCredential = errors.New("invalid credential")
	// ErrNotSignedByRegistry wraps every error of CheckSignedByRegistry.
	ErrNotSignedByRegistry = errors.New("credential not accepted by the registry's CA certificates")
)

// Key is a parsed device credential. Keys returned by a KeyCache are shared:
// treat them as read-only.
type Key struct {
	// Format is one of the Format constants.
	Format int32
	// Public is an *rsa.PublicKey or an *ecdsa.PublicKey on P-256.
	Public crypto.PublicKey
	// Cert is the certificate for the X.509 formats, nil for bare keys.
	Cert *x509.Certificate
}

// FormatName returns the iotpb.PublicKeyFormat enum name of a format, as API
// users know it.
func FormatName(format int32) string {
	switch format {
	case FormatRSAX509PEM:
		return "RSA_X509_PEM"
	case FormatES256PEM:
		return "ES256_PEM"
	case FormatRSAPEM:
		return "RSA_PEM"
	case FormatES256X509PEM:
		return "ES256_X509_PEM"
	case 0:
		return "UNSPECIFIED_PUBLIC_KEY_FORMAT"
	default:
		return "PublicKeyFormat(" + strconv.Itoa(int(format)) + ")"
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidCredential}, args...)...)
}

// ParseCredential parses the PEM text of a device credential in the given
// format. It checks the structure and the key (type, RSA size, EC curve) but
// not the certificate's validity period: Cloud IoT accepted expired
// certificates as keys unless the registry had CA certificates.
func ParseCredential(format int32, pemText string) (*Key, error) {
	name := FormatName(format)
	switch format {
	case FormatRSAX509PEM, FormatES256PEM, FormatRSAPEM, FormatES256X509PEM:
	case 0:
		return nil, invalid("public key format is unspecified: use RSA_X509_PEM, ES256_PEM, RSA_PEM or ES256_X509_PEM")
	default:
		return nil, invalid("unknown public key format %d: use RSA_X509_PEM, ES256_PEM, RSA_PEM or ES256_X509_PEM", format)
	}
	block, err := singleBlock(pemText)
	if err != nil {
		return nil, invalid("%s key: %v", name, err)
	}
	k := &Key{Format: format}
	switch format {
	case FormatRSAX509PEM, FormatES256X509PEM:
		if block.Type != "CERTIFICATE" {
			return nil, invalid("%s key: PEM block is %q, want \"CERTIFICATE\"%s", name, block.Type, blockHint(block.Type))
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, invalid("%s key: bad certificate: %v", name, err)
		}
		k.Cert, k.Public = cert, cert.PublicKey
	case FormatRSAPEM:
		switch block.Type {
		case "PUBLIC KEY":
			k.Public, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			k.Public, err = x509.ParsePKCS1PublicKey(block.Bytes)
		default:
			return nil, invalid("%s key: PEM block is %q, want \"PUBLIC KEY\" or \"RSA PUBLIC KEY\"%s", name, block.Type, blockHint(block.Type))
		}
		if err != nil {
			return nil, invalid("%s key: bad public key: %v", name, err)
		}
	case FormatES256PEM:
		if block.Type != "PUBLIC KEY" {
			return nil, invalid("%s key: PEM block is %q, want \"PUBLIC KEY\"%s", name, block.Type, blockHint(block.Type))
		}
		if k.Public, err = x509.ParsePKIXPublicKey(block.Bytes); err != nil {
			return nil, invalid("%s key: bad public key: %v", name, err)
		}
	}
	wantRSA := format == FormatRSAX509PEM || format == FormatRSAPEM
	if err := checkKey(k.Public, wantRSA); err != nil {
		return nil, invalid("%s key: %v", name, err)
	}
	return k, nil
}

// ParseCACertificate parses a registry CA certificate (X509_CERTIFICATE_PEM).
// It must be able to sign certificates (an X.509 v1 certificate, or basic
// constraints CA:TRUE, and the keyCertSign usage when key usage is present)
// and hold an RSA key of at least 2048 bits or a P-256 key. Its validity
// period is checked when it is used, not here.
func ParseCACertificate(pemText string) (*x509.Certificate, error) {
	block, err := singleBlock(pemText)
	if err != nil {
		return nil, invalid("CA certificate: %v", err)
	}
	if block.Type != "CERTIFICATE" {
		return nil, invalid("CA certificate: PEM block is %q, want \"CERTIFICATE\"%s", block.Type, blockHint(block.Type))
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, invalid("CA certificate: %v", err)
	}
	// Same rule as x509.Certificate.CheckSignatureFrom, so a certificate we
	// accept here can actually verify device certificates later.
	if (cert.Version == 3 && !cert.BasicConstraintsValid) || (cert.BasicConstraintsValid && !cert.IsCA) {
		return nil, invalid("CA certificate: %q is not a CA certificate (basic constraints CA:TRUE missing)", cert.Subject.String())
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, invalid("CA certificate: %q may not sign certificates (key usage lacks keyCertSign)", cert.Subject.String())
	}
	_, isRSA := cert.PublicKey.(*rsa.PublicKey)
	if err := checkKey(cert.PublicKey, isRSA); err != nil {
		return nil, invalid("CA certificate: %v", err)
	}
	return cert, nil
}

// CheckSignedByRegistry enforces a registry's CA certificates on a device
// credential. With no CAs every credential passes. Otherwise the credential
// must be an X.509 certificate (RSA_X509_PEM or ES256_X509_PEM) signed
// directly by one of cas (intermediates are not followed), and both it and
// the signing CA must be valid at now.
func CheckSignedByRegistry(k *Key, cas []*x509.Certificate, now time.Time) error {
	if len(cas) == 0 {
		return nil
	}
	if k == nil || k.Cert == nil {
		format := int32(0)
		if k != nil {
			format = k.Format
		}
		return fmt.Errorf("%w: the registry has CA certificates, so device credentials must be X.509 certificates (RSA_X509_PEM or ES256_X509_PEM), not %s",
			ErrNotSignedByRegistry, FormatName(format))
	}
	c := k.Cert
	if err := checkValidity("device certificate", c, now); err != nil {
		return err
	}
	var expiredCA error
	for _, ca := range cas {
		if ca == nil || c.CheckSignatureFrom(ca) != nil {
			continue
		}
		if err := checkValidity("signing CA certificate", ca, now); err != nil {
			// Another CA of the registry may also have signed it (for
			// example a renewed CA with the same key): keep looking.
			expiredCA = err
			continue
		}
		return nil
	}
	if expiredCA != nil {
		return expiredCA
	}
	return fmt.Errorf("%w: device certificate (issuer %q) is not signed directly by any of the registry's %d CA certificate(s)",
		ErrNotSignedByRegistry, c.Issuer.String(), len(cas))
}

func checkValidity(what string, c *x509.Certificate, now time.Time) error {
	const layout = time.RFC3339
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%w: %s %q is not valid before %s", ErrNotSignedByRegistry, what, c.Subject.String(), c.NotBefore.UTC().Format(layout))
	}
	if now.After(c.NotAfter) {
		return fmt.Errorf("%w: %s %q expired at %s", ErrNotSignedByRegistry, what, c.Subject.String(), c.NotAfter.UTC().Format(layout))
	}
	return nil
}

// CertificateDetails are the output-only fields of iotpb.X509CertificateDetails.
type CertificateDetails struct {
	Issuer, Subject       string
	StartTime, ExpiryTime time.Time
	// SignatureAlgorithm is Go's name for it, e.g. "SHA256-RSA", "ECDSA-SHA256".
	SignatureAlgorithm string
	// PublicKeyType is "RSA" or "ECDSA".
	PublicKeyType string
}

// Details returns the fields Cloud IoT reports about a certificate.
func Details(c *x509.Certificate) CertificateDetails {
	return CertificateDetails{
		Issuer:             c.Issuer.String(),
		Subject:            c.Subject.String(),
		StartTime:          c.NotBefore,
		ExpiryTime:         c.NotAfter,
		SignatureAlgorithm: c.SignatureAlgorithm.String(),
		PublicKeyType:      c.PublicKeyAlgorithm.String(),
	}
}

// singleBlock decodes exactly one PEM block with nothing but whitespace
// around it: text before or after a block is almost always a paste mistake
// (two keys, `openssl x509 -text` output) that the user should see.
func singleBlock(pemText string) (*pem.Block, error) {
	if len(pemText) > maxPEMBytes {
		return nil, fmt.Errorf("PEM text is %d bytes, more than the %d allowed", len(pemText), maxPEMBytes)
	}
	data := bytes.TrimSpace([]byte(pemText))
	if len(data) == 0 {
		return nil, errors.New("empty PEM text")
	}
	if !bytes.HasPrefix(data, []byte("-----BEGIN ")) {
		if strings.Contains(pemText, "-----BEGIN ") {
			return nil, errors.New("unexpected text before the PEM block")
		}
		return nil, errors.New("not PEM: want text starting with \"-----BEGIN \"")
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("malformed PEM block (check the BEGIN/END lines and the base64 body)")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		if bytes.Contains(rest, []byte("-----BEGIN ")) {
			return nil, errors.New("more than one PEM block: give one key or certificate per credential")
		}
		return nil, errors.New("unexpected text after the PEM block")
	}
	if len(block.Headers) != 0 {
		return nil, errors.New("PEM headers are not allowed (is the key encrypted?)")
	}
	return block, nil
}

// blockHint adds advice for the usual mistakes.
func blockHint(blockType string) string {
	switch {
	case strings.Contains(blockType, "PRIVATE KEY"):
		return ": this is a private key; upload the public key or certificate, and keep the private key on the device"
	case blockType == "CERTIFICATE":
		return ": for a certificate use RSA_X509_PEM or ES256_X509_PEM"
	case strings.Contains(blockType, "PUBLIC KEY"):
		return ": for a bare public key use RSA_PEM or ES256_PEM"
	}
	return ""
}

// checkKey checks the key type wanted by the format (RSA or ES256) and the
// key's strength.
func checkKey(pub crypto.PublicKey, wantRSA bool) error {
	switch key := pub.(type) {
	case *rsa.PublicKey:
		if !wantRSA {
			return errors.New("the key is RSA, the format needs an ECDSA P-256 key (use RSA_PEM or RSA_X509_PEM for RSA)")
		}
		if bits := key.N.BitLen(); bits < MinRSABits {
			return fmt.Errorf("RSA key has %d bits, at least %d are required", bits, MinRSABits)
		} else if bits > MaxRSABits {
			return fmt.Errorf("RSA key has %d bits, at most %d are allowed", bits, MaxRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		if wantRSA {
			return errors.New("the key is ECDSA, the format needs an RSA key (use ES256_PEM or ES256_X509_PEM for ECDSA)")
		}
		if key.Curve != elliptic.P256() {
			return fmt.Errorf("ECDSA key is on curve %s, ES256 needs P-256", key.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		return errors.New("keys of type Ed25519 are not supported: use RSA (2048 bits or more) or ECDSA P-256")
	default:
		return fmt.Errorf("unsupported key type %T: use RSA (2048 bits or more) or ECDSA P-256", pub)
	}
}
