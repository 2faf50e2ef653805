// Package filter parses and evaluates Google Cloud Pub/Sub subscription
// filters (https://cloud.google.com/pubsub/docs/subscription-message-filter):
// conditions on a message's attributes joined with AND, OR, NOT (or "-")
// and parentheses.
//
//	attributes.k = "v"           the attribute k equals v
//	attributes.k != "v"          k is absent or differs from v
//	attributes:k                 k is present
//	hasPrefix(attributes.k, "p") k is present and starts with p
//
// As on Google's service, AND and OR may not be mixed without parentheses,
// and a filter is at most 256 bytes.
package filter

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxLen is the longest filter Google accepts, in bytes.
const MaxLen = 256

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("invalid filter")

// Filter is a parsed filter. The zero value (and nil) matches every message.
type Filter struct{ root node }

// Match reports whether a message with these attributes passes the filter.
func (f *Filter) Match(attrs map[string]string) bool {
	if f == nil || f.root == nil {
		return true
	}
	return f.root.eval(attrs)
}

// Parse parses a filter; the empty string is the filter that matches all.
func Parse(s string) (*Filter, error) {
	if len(s) > MaxLen {
		return nil, fmt.Errorf("%w: it has %d bytes, at most %d are allowed", ErrInvalid, len(s), MaxLen)
	}
	if strings.TrimSpace(s) == "" {
		return &Filter{}, nil
	}
	p := &parser{src: s}
	n, err := p.expr()
	if err == nil {
		p.skip()
		if p.pos < len(p.src) {
			err = p.errorf("unexpected %q", p.src[p.pos:])
		}
	}
	if err != nil {
		return nil, err
	}
	return &Filter{root: n}, nil
}

type node interface{ eval(map[string]string) bool }

type (
	andNode []node
	orNode  []node
	notNode struct{ n node }
	eqNode  struct {
		key, value string
		negate     bool
	}
	hasNode    struct{ key string }
	prefixNode struct{ key, prefix string }
)

func (a andNode) eval(m map[string]string) bool {
	for _, n := range a {
		if !n.eval(m) {
			return false
		}
	}
	return true
}

func (o orNode) eval(m map[string]string) bool {
	for _, n := range o {
		if n.eval(m) {
			return true
		}
	}
	return false
}

func (n notNode) eval(m map[string]string) bool { return !n.n.eval(m) }

func (e eqNode) eval(m map[string]string) bool {
	v, ok := m[e.key]
	if e.negate {
		return !ok || v != e.value
	}
	return ok && v == e.value
}

func (h hasNode) eval(m map[string]string) bool { _, ok := m[h.key]; return ok }

func (p prefixNode) eval(m map[string]string) bool {
	v, ok := m[p.key]
	return ok && strings.HasPrefix(v, p.prefix)
}

type parser struct {
	src string
	pos int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrInvalid, p.pos, fmt.Sprintf(format, args...))
}

func (p *parser) skip() {
	for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t' || p.src[p.pos] == '\n' || p.src[p.pos] == '\r') {
		p.pos++
	}
}

// keyword reports (and consumes) a keyword followed by a non-identifier byte.
func (p *parser) keyword(kw string) bool {
	p.skip()
	if !strings.HasPrefix(p.src[p.pos:], kw) {
		return false
	}
	end := p.pos + len(kw)
	if end < len(p.src) && isIdent(p.src[end]) {
		return false
	}
	p.pos = end
	return true
}

func (p *parser) punct(s string) bool {
	p.skip()
	if strings.HasPrefix(p.src[p.pos:], s) {
		p.pos += len(s)
		return true
	}
	return false
}

// expr = term { (AND | OR) term }, one operator kind per level.
func (p *parser) expr() (node, error) {
	first, err := p.factor()
	if err != nil {
		return nil, err
	}
	var op string
	nodes := []node{first}
	for {
		var this string
		switch {
		case p.keyword("AND"):
			this = "AND"
		case p.keyword("OR"):
			this = "OR"
		default:
			switch {
			case len(nodes) == 1:
				return first, nil
			case op == "AND":
				return andNode(nodes), nil
			default:
				return orNode(nodes), nil
			}
		}
		if op != "" && op != this {
			return nil, p.errorf("AND and OR cannot be mixed without parentheses")
		}
		op = this
		n, err := p.factor()
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
}

func (p *parser) factor() (node, error) {
	p.skip()
	switch {
	case p.keyword("NOT"), p.punct("-"):
		n, err := p.factor()
		if err != nil {
			return nil, err
		}
		return notNode{n}, nil
	case p.punct("("):
		n, err := p.expr()
		if err != nil {
			return nil, err
		}
		if !p.punct(")") {
			return nil, p.errorf("missing )")
		}
		return n, nil
	case p.keyword("hasPrefix"):
		if !p.punct("(") {
			return nil, p.errorf("hasPrefix needs (")
		}
		if !p.punct("attributes.") {
			return nil, p.errorf("hasPrefix's first argument must be attributes.KEY")
		}
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		if !p.punct(",") {
			return nil, p.errorf("hasPrefix needs a comma between its arguments")
		}
		prefix, err := p.str()
		if err != nil {
			return nil, err
		}
		if !p.punct(")") {
			return nil, p.errorf("missing ) after hasPrefix's arguments")
		}
		return prefixNode{key: key, prefix: prefix}, nil
	case p.punct("attributes:"):
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		return hasNode{key: key}, nil
	case p.punct("attributes."):
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		negate := false
		switch {
		case p.punct("!="):
			negate = true
		case p.punct("="):
		default:
			return nil, p.errorf("want = or != after attributes.%s", key)
		}
		v, err := p.str()
		if err != nil {
			return nil, err
		}
		return eqNode{key: key, value: v, negate: negate}, nil
	}
	if p.pos >= len(p.src) {
		return nil, p.errorf("unexpected end of the filter")
	}
	return nil, p.errorf("want attributes.KEY, attributes:KEY, hasPrefix(...), NOT or (")
}

func isIdent(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// key is an identifier or a quoted string.
func (p *parser) key() (string, error) {
	if p.pos < len(p.src) && p.src[p.pos] == '"' {
		return p.str()
	}
	start := p.pos
	for p.pos < len(p.src) && isIdent(p.src[p.pos]) {
		p.pos++
	}
	if p.pos == start {
		return "", p.errorf("want an attribute key")
	}
	return p.src[start:p.pos], nil
}

// str is a double-quoted string with Go-like escapes.
func (p *parser) str() (string, error) {
	p.skip()
	if p.pos >= len(p.src) || p.src[p.pos] != '"' {
		return "", p.errorf("want a double-quoted string")
	}
	for end := p.pos + 1; end < len(p.src); end++ {
		switch p.src[end] {
		case '\\':
			end++
		case '"':
			s, err := strconv.Unquote(p.src[p.pos : end+1])
			if err != nil {
				return "", p.errorf("bad string %s", p.src[p.pos:end+1])
			}
			p.pos = end + 1
			return s, nil
		}
	}
	return "", p.errorf("unterminated string")
}
