package manager

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Partial responses: Google's REST APIs take a "fields" system parameter
// that keeps only the named fields of a successful response, e.g.
// fields=devices(id,numId),nextPageToken or fields=config/version. Names
// are the response's JSON names; "a/b" selects b inside a, "a(b,c)"
// selects b and c inside a, "*" every field at its level. A selection
// applies to each element of a list.

// fieldSelection is a parsed fields parameter: each selected name maps to
// the selection inside it, nil for the whole value.
type fieldSelection map[string]fieldSelection

// parseFields parses a fields parameter.
func parseFields(s string) (fieldSelection, error) {
	p := fieldsParser{in: s}
	sel := fieldSelection{}
	if err := p.list(sel); err != nil {
		return nil, err
	}
	if p.pos != len(p.in) {
		return nil, p.errorf("unexpected %q", p.in[p.pos])
	}
	return sel, nil
}

type fieldsParser struct {
	in  string
	pos int
}

func (p *fieldsParser) errorf(format string, args ...any) error {
	return &invalidArgumentError{msg: fmt.Sprintf("'fields' is invalid at character %d: %s (expected names separated by ',', with '/' or '(...)' for the fields inside a field)",
		p.pos+1, fmt.Sprintf(format, args...))}
}

// list parses path[,path...] into sel.
func (p *fieldsParser) list(sel fieldSelection) error {
	for {
		if err := p.path(sel); err != nil {
			return err
		}
		if p.pos < len(p.in) && p.in[p.pos] == ',' {
			p.pos++
			continue
		}
		return nil
	}
}

// path parses name[/path] or name(list) into sel.
func (p *fieldsParser) path(sel fieldSelection) error {
	start := p.pos
	for p.pos < len(p.in) && !strings.ContainsRune(",/()", rune(p.in[p.pos])) {
		p.pos++
	}
	name := strings.TrimSpace(p.in[start:p.pos])
	if name == "" {
		if p.pos < len(p.in) {
			return p.errorf("a field name is missing before %q", p.in[p.pos])
		}
		return p.errorf("a field name is missing at the end")
	}
	if p.pos == len(p.in) || p.in[p.pos] == ',' || p.in[p.pos] == ')' {
		sel[name] = nil // the whole field, even if also selected in part
		return nil
	}
	inner, seen := sel[name]
	if inner == nil {
		// A field already selected whole stays whole: what follows is
		// parsed into a selection that is dropped.
		inner = fieldSelection{}
		if !seen {
			sel[name] = inner
		}
	}
	switch p.in[p.pos] {
	case '/':
		p.pos++
		return p.path(inner)
	case '(':
		p.pos++
		if err := p.list(inner); err != nil {
			return err
		}
		if p.pos == len(p.in) || p.in[p.pos] != ')' {
			return p.errorf("a ')' is missing")
		}
		p.pos++
		return nil
	}
	return p.errorf("unexpected %q", p.in[p.pos])
}

// apply keeps the selected parts of a decoded JSON value.
func (sel fieldSelection) apply(v any) any {
	if sel == nil {
		return v
	}
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(sel))
		if all, ok := sel["*"]; ok {
			for k, fv := range v {
				out[k] = all.apply(fv)
			}
		}
		for k, inner := range sel {
			if fv, ok := v[k]; ok && k != "*" {
				out[k] = inner.apply(fv)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = sel.apply(e)
		}
		return out
	default:
		return v
	}
}

// fieldsWriter holds a successful response back and writes only the
// selected fields of it; errors pass through untouched.
type fieldsWriter struct {
	http.ResponseWriter
	sel         fieldSelection
	status      int
	passThrough bool
	body        bytes.Buffer
}

func (w *fieldsWriter) WriteHeader(status int) {
	if w.status != 0 {
		return
	}
	w.status = status
	if status < 200 || status > 299 {
		w.passThrough = true
		w.ResponseWriter.WriteHeader(status)
	}
}

func (w *fieldsWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.passThrough {
		return w.ResponseWriter.Write(p)
	}
	return w.body.Write(p)
}

// Flush implements http.Flusher, which the transcoder requires; the body is
// held until finish.
func (w *fieldsWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok && w.passThrough {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *fieldsWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish writes the selected fields of the held-back response.
func (w *fieldsWriter) finish() {
	if w.passThrough || w.status == 0 {
		return
	}
	body := w.body.Bytes()
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // numbers go back out as they came
	if err := dec.Decode(&v); err == nil {
		if filtered, err := json.Marshal(w.sel.apply(v)); err == nil {
			body = append(filtered, '\n')
		}
	}
	w.Header().Del("Content-Length")
	w.ResponseWriter.WriteHeader(w.status)
	_, _ = w.ResponseWriter.Write(body)
}
