package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// target is the broker under test and how devices log in to it.
type target struct {
	name     string // "passerelle" or "mosquitto", for the report
	addr     string
	tls      *tls.Config
	plain    bool // no provisioning, no JWT (Mosquitto)
	project  string
	location string
	registry string
	jwt      string // one token serves every device (same key, same aud)
}

// deviceID is the id of device i.
func deviceID(i int) string { return fmt.Sprintf("dev%05d", i) }

func (t *target) registryName() string {
	return "projects/" + t.project + "/locations/" + t.location + "/registries/" + t.registry
}

// dial connects device i.
func (t *target) dial(ctx context.Context, i int) (*mqttConn, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if t.plain {
		return dialMQTT(ctx, t.addr, t.tls, "bench-"+deviceID(i), "", "", 600)
	}
	return dialMQTT(ctx, t.addr, t.tls, t.registryName()+"/devices/"+deviceID(i), "unused", t.jwt, 600)
}

// bearer sends the admin token over plaintext gRPC (Google's OAuth
// credentials insist on TLS).
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

// newAdminClient is Google's DeviceManager client on the manager at addr.
func newAdminClient(ctx context.Context, addr, token string) (*iot.DeviceManagerClient, error) {
	opts := []option.ClientOption{
		option.WithEndpoint(addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
	if token != "" {
		opts = append(opts, option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer(token))))
	}
	return iot.NewDeviceManagerClient(ctx, opts...)
}

// loadOrCreateKey reads an RSA private key (PKCS#8 PEM) from path, or makes
// one and writes it there, so that successive runs share the devices'
// public key.
func loadOrCreateKey(path string) (*rsa.PrivateKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM block", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an RSA key", path)
		}
		return rk, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	if path != "" {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// signJWT makes the one device token of the run: RS256, aud = project,
// valid for an hour. RS256 signing costs ~1 ms, so it is done once.
func signJWT(k *rsa.PrivateKey, project string) (string, error) {
	now := time.Now()
	return jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"aud": project,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}).SignedString(k)
}

// provision makes the registry (with an event notification topic) and
// devices 0..n-1, all with k's public key; what exists already is kept.
func provision(ctx context.Context, c *iot.DeviceManagerClient, t *target, k *rsa.PrivateKey, n int) error {
	parent := "projects/" + t.project + "/locations/" + t.location
	_, err := c.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{
		Parent: parent,
		DeviceRegistry: &iotpb.DeviceRegistry{
			Id: t.registry,
			EventNotificationConfigs: []*iotpb.EventNotificationConfig{
				{PubsubTopicName: "projects/" + t.project + "/topics/bench-events"},
			},
		},
	})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("create the registry: %w", err)
	}
	have := map[string]bool{}
	it := c.ListDevices(ctx, &iotpb.ListDevicesRequest{Parent: t.registryName(), PageSize: 10000})
	for {
		d, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return fmt.Errorf("list devices: %w", err)
		}
		have[d.Id] = true
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return err
	}
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	jobs := make(chan int)
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				_, err := c.CreateDevice(ctx, &iotpb.CreateDeviceRequest{
					Parent: t.registryName(),
					Device: &iotpb.Device{
						Id: deviceID(i),
						Credentials: []*iotpb.DeviceCredential{{
							Credential: &iotpb.DeviceCredential_PublicKey{PublicKey: &iotpb.PublicKeyCredential{
								Format: iotpb.PublicKeyFormat_RSA_PEM, Key: pub,
							}},
						}},
					},
				})
				if err != nil && status.Code(err) != codes.AlreadyExists {
					e := fmt.Errorf("create device %s: %w", deviceID(i), err)
					firstErr.CompareAndSwap(nil, &e)
				}
			}
		}()
	}
	for i := range n {
		if !have[deviceID(i)] {
			jobs <- i
		}
	}
	close(jobs)
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return *p
	}
	return nil
}
