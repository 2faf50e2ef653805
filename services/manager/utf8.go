package manager

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// JSON, protobuf strings and gRPC status messages are UTF-8. A request
// carrying other bytes is refused here, with a message that says where,
// before the transcoder sees it: its JSON decoder quotes the bad bytes in
// its error, and an error message that is not UTF-8 cannot be marshalled,
// which came out as 500 "failed to marshal end error".

// invalidUTF8Body returns the message for a JSON body that is not UTF-8,
// or "" when it is.
func invalidUTF8Body(body []byte) string {
	if utf8.Valid(body) {
		return ""
	}
	off := firstInvalidUTF8(body)
	msg := fmt.Sprintf("Invalid JSON payload received: invalid UTF-8 at byte %d of the body", off)
	if path := jsonPathAt(body, off); path != "" {
		msg += fmt.Sprintf(" (in %s)", strconv.QuoteToASCII(path))
	}
	return msg + ": JSON text must be UTF-8"
}

// invalidUTF8URL returns the message for a request whose path or query
// decodes to bytes that are not UTF-8, or "" when it has none.
func invalidUTF8URL(u *url.URL) string {
	if !utf8.ValidString(u.Path) {
		return "Invalid request: the URL path is not valid UTF-8 once percent-decoded"
	}
	for pair := range strings.SplitSeq(u.RawQuery, "&") {
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil || !utf8.ValidString(key) {
			return fmt.Sprintf("Invalid request: the query parameter name %s is not valid UTF-8 once percent-decoded", strconv.QuoteToASCII(k))
		}
		if value, err := url.QueryUnescape(v); err == nil && !utf8.ValidString(value) {
			return fmt.Sprintf("Invalid request: the value of query parameter %s is not valid UTF-8 once percent-decoded", strconv.QuoteToASCII(key))
		}
	}
	return ""
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// jsonPathAt returns the path (metadata.key, credentials[0].publicKey) of
// the member or element of a JSON document that holds byte off, as far as
// the document parses; "" at the top level.
func jsonPathAt(doc []byte, off int) string {
	type frame struct {
		object  bool
		wantKey bool   // objects: the next string is a key
		key     string // objects: the member being read
		index   int    // arrays: the element being read
	}
	var stack []frame
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.object {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.key)
			} else {
				fmt.Fprintf(&b, "[%d]", f.index)
			}
		}
		return b.String()
	}
	// done marks the value just read as complete in its container.
	done := func() {
		if len(stack) == 0 {
			return
		}
		if top := &stack[len(stack)-1]; top.object {
			top.wantKey = true
		} else {
			top.index++
		}
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil || dec.InputOffset() > int64(off) {
			// This token holds the byte, or the document breaks there.
			if top := len(stack) - 1; top >= 0 && stack[top].object && stack[top].wantKey {
				stack[top].key, _ = tok.(string) // the key holds it
			}
			return path()
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			done()
			continue
		}
		if top := len(stack) - 1; top >= 0 && stack[top].object && stack[top].wantKey {
			stack[top].key, _ = tok.(string)
			stack[top].wantKey = false
			continue
		}
		done()
	}
}
