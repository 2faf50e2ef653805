package hub

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/passerelle-iot/passerelle/pkg/resource"
)

// Algorithm is a gateway key's JWT algorithm: "RS256" or "ES256".
type Algorithm string

// The algorithms Cloud IoT Core gateways sign with.
const (
	RS256 Algorithm = "RS256"
	ES256 Algorithm = "ES256"
)

// KeySource says where a gateway key came from.
type KeySource int

// Key sources.
const (
	SourceGatewaysFile KeySource = iota + 1 // the gateways file
	SourceKeyStore                          // made by CreateGateway
)

// GatewayKey is the private key a gateway signs its JWTs with.
type GatewayKey struct {
	// Name is the gateway's resource name.
	Name string
	// Algorithm is RS256 or ES256.
	Algorithm Algorithm
	// Source is where the key came from.
	Source KeySource

	device resource.Device
	signer crypto.Signer
}

// Sign returns a gateway JWT (aud: the project) valid from iat to exp.
func (k *GatewayKey) Sign(iat, exp time.Time) (string, error) {
	method := jwt.SigningMethod(jwt.SigningMethodES256)
	if k.Algorithm == RS256 {
		method = jwt.SigningMethodRS256
	}
	return jwt.NewWithClaims(method, jwt.RegisteredClaims{
		Audience:  jwt.ClaimStrings{k.device.Project},
		IssuedAt:  jwt.NewNumericDate(iat),
		ExpiresAt: jwt.NewNumericDate(exp),
	}).SignedString(k.signer)
}

// Errors of the key store.
var (
	// ErrNoKey: the hub holds no key for this gateway.
	ErrNoKey = errors.New("the hub holds no key for this gateway")
	// ErrKeyExists: CreateGateway for a gateway the hub already has a key for.
	ErrKeyExists = errors.New("the hub already holds a key for this gateway")
)

// GatewayFileEntry is one gateway of a gateways file, a JSON array:
//
//	[{"name": "projects/p/locations/l/registries/r/devices/gw",
//	  "algorithm": "RS256", "private_key_file": "keys/gw.pem"}]
//
// A relative private_key_file is read from the gateways file's folder.
// The key is a PEM PKCS#8, PKCS#1 (RSA) or SEC 1 (EC) private key.
type GatewayFileEntry struct {
	Name           string `json:"name"`
	Algorithm      string `json:"algorithm"`
	PrivateKeyFile string `json:"private_key_file"`
}

// Keys holds the gateways' private keys: those named in a gateways file
// and those of the key store folder (one PEM file per gateway, mode 0600,
// named after the gateway's resource name). Hub replicas share the folder
// (a volume every replica mounts): a key one of them makes is read by
// another when it first needs it. It is safe for concurrent use.
type Keys struct {
	dir string // key store folder; "" for none

	mu   sync.RWMutex
	keys map[string]*GatewayKey
}

// NewKeys loads the gateways file (none when path is "") and the key store
// folder dir (created with mode 0700 if missing; none when dir is "").
func NewKeys(gatewaysFile, dir string) (*Keys, error) {
	k := &Keys{dir: dir, keys: map[string]*GatewayKey{}}
	if gatewaysFile != "" {
		if err := k.loadFile(gatewaysFile); err != nil {
			return nil, err
		}
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("key store: %w", err)
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("key store: %w", err)
		}
		for _, e := range ents {
			n, ok := strings.CutSuffix(e.Name(), ".pem")
			if !ok || e.IsDir() {
				continue
			}
			name, err := url.QueryUnescape(n)
			if err != nil {
				continue
			}
			key, err := loadKey(name, "", filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, fmt.Errorf("key store: %w", err)
			}
			key.Source = SourceKeyStore
			if _, dup := k.keys[name]; !dup {
				k.keys[name] = key
			}
		}
	}
	return k, nil
}

func (k *Keys) loadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("gateways file: %w", err)
	}
	var entries []GatewayFileEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return fmt.Errorf("gateways file %s: %w (want a JSON array of {name, algorithm, private_key_file})", path, err)
	}
	for i, e := range entries {
		kf := e.PrivateKeyFile
		if kf != "" && !filepath.IsAbs(kf) {
			kf = filepath.Join(filepath.Dir(path), kf)
		}
		key, err := loadKey(e.Name, Algorithm(e.Algorithm), kf)
		if err != nil {
			return fmt.Errorf("gateways file %s, entry %d: %w", path, i, err)
		}
		key.Source = SourceGatewaysFile
		if _, dup := k.keys[e.Name]; dup {
			return fmt.Errorf("gateways file %s, entry %d: gateway %s named twice", path, i, e.Name)
		}
		k.keys[e.Name] = key
	}
	return nil
}

// loadKey reads a private key file; alg "" means "from the key's type".
func loadKey(name string, alg Algorithm, path string) (*GatewayKey, error) {
	dev, err := resource.ParseDevice("name", name)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, fmt.Errorf("gateway %s: private_key_file is required", name)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", name, err)
	}
	signer, err := parsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %s: %w", name, path, err)
	}
	keyAlg := ES256
	if _, ok := signer.(*rsa.PrivateKey); ok {
		keyAlg = RS256
	}
	if alg == "" {
		alg = keyAlg
	}
	if alg != RS256 && alg != ES256 {
		return nil, fmt.Errorf("gateway %s: algorithm %q: want RS256 or ES256", name, alg)
	}
	if alg != keyAlg {
		return nil, fmt.Errorf("gateway %s: algorithm %s does not match the %s key in %s", name, alg, keyAlg, path)
	}
	return &GatewayKey{Name: name, Algorithm: alg, device: dev, signer: signer}, nil
}

func parsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		switch k := k.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case *ecdsa.PrivateKey:
			if k.Curve != elliptic.P256() {
				return nil, errors.New("an EC key must be on P-256 for ES256")
			}
			return k, nil
		}
		return nil, errors.New("want an RSA or P-256 EC private key")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		if k.Curve != elliptic.P256() {
			return nil, errors.New("an EC key must be on P-256 for ES256")
		}
		return k, nil
	}
	return nil, errors.New("not a PKCS#8, PKCS#1 or SEC 1 private key")
}

// Get returns the key of the gateway named name, or ErrNoKey. A key not
// loaded yet is looked for in the key store folder, where another hub
// replica sharing the folder may have put it (CreateGateway on it).
func (k *Keys) Get(name string) (*GatewayKey, error) {
	k.mu.RLock()
	key, ok := k.keys[name]
	k.mu.RUnlock()
	if ok {
		return key, nil
	}
	if k.dir != "" {
		if _, err := resource.ParseDevice("name", name); err == nil {
			if key, err := loadKey(name, "", k.path(name)); err == nil {
				key.Source = SourceKeyStore
				k.mu.Lock()
				defer k.mu.Unlock()
				if have, dup := k.keys[name]; dup {
					return have, nil
				}
				k.keys[name] = key
				return key, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNoKey, name)
}

// List returns every key, sorted by gateway name.
func (k *Keys) List() []*GatewayKey {
	k.mu.RLock()
	out := make([]*GatewayKey, 0, len(k.keys))
	for _, key := range k.keys {
		out = append(out, key)
	}
	k.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Generated is a key pair made by Generate, not yet stored.
type Generated struct {
	key *GatewayKey
	// PublicKeyPEM is the public key, PEM "PUBLIC KEY".
	PublicKeyPEM string
	// Format is the Cloud IoT credential format: RSA_PEM or ES256_PEM.
	Format string
}

// Generate makes a key pair for gateway name. Store it with Commit once
// the gateway exists.
func (k *Keys) Generate(name string, alg Algorithm) (*Generated, error) {
	dev, err := resource.ParseDevice("name", name)
	if err != nil {
		return nil, err
	}
	if k.dir == "" {
		return nil, errors.New("the hub has no key store (no data directory)")
	}
	if _, err := k.Get(name); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrKeyExists, name)
	}
	var signer crypto.Signer
	format := "ES256_PEM"
	switch alg {
	case RS256:
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
		format = "RSA_PEM"
	case ES256:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("algorithm %q: want RS256 or ES256", alg)
	}
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, err
	}
	return &Generated{
		key:          &GatewayKey{Name: name, Algorithm: alg, Source: SourceKeyStore, device: dev, signer: signer},
		PublicKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		Format:       format,
	}, nil
}

// Commit writes a generated key to the key store (mode 0600) and makes it
// usable.
func (k *Keys) Commit(g *Generated) (*GatewayKey, error) {
	der, err := x509.MarshalPKCS8PrivateKey(g.key.signer)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, dup := k.keys[g.key.Name]; dup {
		return nil, fmt.Errorf("%w: %s", ErrKeyExists, g.key.Name)
	}
	path := k.path(g.key.Name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("key store: %w", err)
	}
	k.keys[g.key.Name] = g.key
	return g.key, nil
}

// Forget drops the key of gateway name (a gateway deleted from its
// registry), deleting its file when it is in the key store. A gateways
// file and the key files it names are the user's and are left alone.
// Forgetting a key the hub does not hold does nothing.
func (k *Keys) Forget(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	key, ok := k.keys[name]
	if !ok {
		return nil
	}
	delete(k.keys, name)
	if key.Source != SourceKeyStore || k.dir == "" {
		return nil
	}
	if err := os.Remove(k.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("key store: %w", err)
	}
	return nil
}

// path is the key store file of gateway name.
func (k *Keys) path(name string) string {
	return filepath.Join(k.dir, url.QueryEscape(name)+".pem")
}
