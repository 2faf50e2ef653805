package format

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// ListOptions are gcloud's list flags that act on the client.
type ListOptions struct {
	Filter string   // --filter
	SortBy []string // --sort-by; a leading ~ sorts descending
	Limit  int      // --limit; 0 is unlimited
}

// Apply sorts, filters and limits records in gcloud's order.
func (o ListOptions) Apply(records []any) ([]any, error) {
	f, err := ParseFilter(o.Filter)
	if err != nil {
		return nil, err
	}
	out := append([]any(nil), records...)
	if len(o.SortBy) > 0 {
		sort.SliceStable(out, func(i, j int) bool {
			for _, k := range o.SortBy {
				desc := strings.HasPrefix(k, "~")
				key := strings.Split(strings.TrimPrefix(k, "~"), ".")
				a, b := render(Lookup(out[i], key), Value), render(Lookup(out[j], key), Value)
				if a == b {
					continue
				}
				return (a < b) != desc
			}
			return false
		})
	}
	kept := out[:0]
	for _, r := range out {
		if f.Match(r) {
			kept = append(kept, r)
		}
	}
	if o.Limit > 0 && len(kept) > o.Limit {
		kept = kept[:o.Limit]
	}
	return kept, nil
}

// Filter is a parsed --filter expression: terms joined by AND (or
// juxtaposition) and OR, each term KEY:PATTERN (has, * globs,
// case-insensitive), KEY=VALUE, KEY!=VALUE, optionally preceded by NOT
// or -.
type Filter struct{ any [][]term }

type term struct {
	key    []string
	op     string
	value  string
	negate bool
}

// FilterError is a --filter expression that does not parse.
type FilterError struct{ Expr, Reason string }

func (e *FilterError) Error() string {
	return fmt.Sprintf("invalid filter [%s]: %s; expected terms such as KEY:PATTERN, KEY=VALUE, KEY!=VALUE joined by AND, OR, NOT", e.Expr, e.Reason)
}

// ParseFilter parses a --filter expression; an empty one matches all.
func ParseFilter(expr string) (*Filter, error) {
	f := &Filter{}
	var and []term
	negate := false
	for _, w := range fields(expr) {
		switch strings.ToUpper(w) {
		case "AND":
			continue
		case "OR":
			if len(and) == 0 {
				return nil, &FilterError{expr, "OR without a term before it"}
			}
			f.any = append(f.any, and)
			and = nil
			continue
		case "NOT":
			negate = !negate
			continue
		}
		if strings.HasPrefix(w, "-") {
			negate, w = !negate, w[1:]
		}
		t, err := parseTerm(w)
		if err != nil {
			return nil, &FilterError{expr, err.Error()}
		}
		t.negate = negate
		negate = false
		and = append(and, t)
	}
	if len(and) > 0 {
		f.any = append(f.any, and)
	}
	return f, nil
}

// fields splits at spaces outside quotes.
func fields(s string) []string {
	var out []string
	var cur strings.Builder
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote = c
		case c == ' ' || c == '\t':
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

func parseTerm(w string) (term, error) {
	for _, op := range []string{"!=", "=", ":"} {
		if i := strings.Index(w, op); i > 0 {
			return term{key: strings.Split(w[:i], "."), op: op, value: w[i+len(op):]}, nil
		}
	}
	return term{}, fmt.Errorf("term %q has no operator", w)
}

// Match says whether record r passes the filter.
func (f *Filter) Match(r any) bool {
	if f == nil || len(f.any) == 0 {
		return true
	}
	for _, and := range f.any {
		ok := true
		for _, t := range and {
			if t.match(r) == t.negate {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (t term) match(r any) bool {
	v := Lookup(r, t.key)
	var values []string
	if l, ok := v.([]any); ok {
		for _, e := range l {
			values = append(values, render(e, Value))
		}
	} else {
		values = []string{render(v, Value)}
	}
	for _, s := range values {
		switch t.op {
		case "=":
			if strings.EqualFold(s, t.value) {
				return true
			}
		case "!=":
			return !strings.EqualFold(s, t.value)
		case ":":
			if t.value == "*" {
				if s != "" {
					return true
				}
				continue
			}
			if ok, _ := path.Match(strings.ToLower(t.value), strings.ToLower(s)); ok {
				return true
			}
			if !strings.Contains(t.value, "*") && strings.EqualFold(s, t.value) {
				return true
			}
		}
	}
	return false
}
