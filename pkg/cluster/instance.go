package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// MaxInstanceIDLen bounds an instance id, which travels in every presence
// record and lease.
const MaxInstanceIDLen = 128

// NewInstanceID returns an id for this process that no other start of any
// process shares: "<hostname>-<8 random hex digits>", the hostname reduced
// to the characters an instance id allows (see CheckInstanceID) and to 64
// of them. It names the holder in presence records and leases and goes in
// the logs, so that an operator can tell which process holds what.
func NewInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "passerelle"
	}
	var b strings.Builder
	for _, r := range host {
		if b.Len() == 64 {
			break
		}
		if instanceIDChar(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:]) // never fails (crypto/rand)
	return b.String() + "-" + hex.EncodeToString(rnd[:])
}

// CheckInstanceID reports whether id may name an instance (the
// --instance-id flag): 1 to MaxInstanceIDLen ASCII letters, digits, '-',
// '_' and '.'. It must be unique among the processes sharing a NATS
// cluster at any time; NewInstanceID's are.
func CheckInstanceID(id string) error {
	if id == "" || len(id) > MaxInstanceIDLen {
		return fmt.Errorf("an instance id has 1 to %d characters, %q has %d", MaxInstanceIDLen, id, len(id))
	}
	for _, r := range id {
		if !instanceIDChar(r) {
			return fmt.Errorf("instance id %q: only ASCII letters, digits, '-', '_' and '.' are allowed, not %q", id, r)
		}
	}
	return nil
}

func instanceIDChar(r rune) bool {
	return r == '-' || r == '_' || r == '.' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9')
}
