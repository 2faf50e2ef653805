package manager

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
)

// Page tokens are opaque to callers: base64url(version | sha256(query)[:16]
// | position | hmac). The query digest binds a token to the filters it was
// made for; the HMAC (under the manager's key) makes a forged or altered
// position detectable. Positions are "after this key", so inserts made
// while a caller pages never make it skip or repeat an older item.
const (
	pageTokenVersion = 1
	queryDigestLen   = 16
	tokenMACLen      = 16
)

// pageTokenSecret names the page-token key in the store.
const pageTokenSecret = "manager-page-tokens"

var errBadPageToken = &invalidArgumentError{msg: "'page_token' is invalid: pass the next_page_token of the previous response unchanged"}

func (m *deviceManager) tokenMAC(body []byte) []byte {
	h := hmac.New(sha256.New, m.tokenKey[:])
	h.Write(body)
	return h.Sum(nil)[:tokenMACLen]
}

func queryDigest(query string) []byte {
	d := sha256.Sum256([]byte(query))
	return d[:queryDigestLen]
}

// encodePageToken returns a token for the page after position, for query.
func (m *deviceManager) encodePageToken(query string, position []byte) string {
	body := make([]byte, 0, 1+queryDigestLen+len(position)+tokenMACLen)
	body = append(body, pageTokenVersion)
	body = append(body, queryDigest(query)...)
	body = append(body, position...)
	body = append(body, m.tokenMAC(body)...)
	return base64.RawURLEncoding.EncodeToString(body)
}

// decodePageToken returns the position of a token made for query; an empty
// token is the first page (nil position).
func (m *deviceManager) decodePageToken(query, token string) ([]byte, error) {
	if token == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < 1+queryDigestLen+tokenMACLen || raw[0] != pageTokenVersion {
		return nil, errBadPageToken
	}
	body, mac := raw[:len(raw)-tokenMACLen], raw[len(raw)-tokenMACLen:]
	if !hmac.Equal(mac, m.tokenMAC(body)) {
		return nil, errBadPageToken
	}
	if !hmac.Equal(body[1:1+queryDigestLen], queryDigest(query)) {
		return nil, invalidf("'page_token' was made for a different query: keep the parent and filters of the first request while paging")
	}
	return body[1+queryDigestLen:], nil
}

func numIDPosition(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func positionNumID(p []byte) (uint64, error) {
	if p == nil {
		return 0, nil
	}
	if len(p) != 8 {
		return 0, errBadPageToken
	}
	return binary.BigEndian.Uint64(p), nil
}
