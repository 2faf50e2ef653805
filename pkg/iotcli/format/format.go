// Package format prints API resources the way gcloud's --format flag did:
// json, yaml, table(...), value(...), csv(...), none and default, with the
// list flags --filter, --sort-by and --limit applied client-side in
// gcloud's order (flatten, sort, filter, limit).
//
// A record is what encoding/json makes of a resource's protojson form:
// map[string]any with camelCase keys, strings for 64-bit numbers and
// timestamps, []any for repeated fields.
package format

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Kind is the printer a --format value names.
type Kind string

// The printers.
const (
	JSON  Kind = "json"
	YAML  Kind = "yaml"
	Table Kind = "table"
	Value Kind = "value"
	CSV   Kind = "csv"
	None  Kind = "none"
)

// Column is one projection key of table(...), value(...) or csv(...).
type Column struct {
	Key        []string    // dotted path
	Transforms []Transform // applied in order
	Label      string      // header; empty: the last key, UPPER_SNAKE
	Optional   bool        // dropped when no row has a value
}

// Transform is a function applied to a column's value, such as basename().
type Transform struct {
	Name string
	Args []string
}

// Spec is a parsed --format value.
type Spec struct {
	Kind      Kind
	Columns   []Column
	NoHeading bool
	Box       bool
}

// ParseError is a --format value that does not parse; it carries the
// accepted syntax.
type ParseError struct{ Value, Reason string }

func (e *ParseError) Error() string {
	return fmt.Sprintf("invalid format [%s]: %s; expected json, yaml, none, default, or table|value|csv(KEY[.TRANSFORM()][:label=LABEL][:optional],...)[no-heading]", e.Value, e.Reason)
}

// kinds are the printers by name; default is yaml, as in gcloud.
var kinds = map[string]Kind{"json": JSON, "yaml": YAML, "default": YAML, "": YAML, "none": None, "table": Table, "value": Value, "csv": CSV}

// Parse parses a --format value.
func Parse(s string) (*Spec, error) {
	s = strings.TrimSpace(s)
	name, rest := s, ""
	if i := strings.IndexAny(s, "(["); i >= 0 {
		name, rest = s[:i], s[i:]
	}
	spec := &Spec{}
	kind, ok := kinds[strings.ToLower(name)]
	if !ok {
		return nil, &ParseError{s, fmt.Sprintf("unknown printer %q", name)}
	}
	spec.Kind = kind
	for rest != "" {
		switch rest[0] {
		case '(':
			end := matching(rest, '(', ')')
			if end < 0 {
				return nil, &ParseError{s, "unbalanced parentheses"}
			}
			cols, err := parseColumns(rest[1:end])
			if err != nil {
				return nil, &ParseError{s, err.Error()}
			}
			spec.Columns = append(spec.Columns, cols...)
			rest = rest[end+1:]
		case '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, &ParseError{s, "unbalanced brackets"}
			}
			for _, a := range strings.Split(rest[1:end], ",") {
				switch strings.TrimSpace(a) {
				case "no-heading":
					spec.NoHeading = true
				case "box":
					spec.Box = true
				case "":
				default:
					return nil, &ParseError{s, fmt.Sprintf("unknown attribute %q (known: no-heading, box)", a)}
				}
			}
			rest = rest[end+1:]
		default:
			return nil, &ParseError{s, fmt.Sprintf("unexpected %q", rest)}
		}
	}
	return spec, nil
}

// matching returns the index of the bracket closing s[0], minding quotes.
func matching(s string, open, close byte) int {
	depth, quote := 0, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == open:
			depth++
		case c == close:
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// splitTop splits s at sep outside brackets and quotes.
func splitTop(s string, sep byte) []string {
	var out []string
	depth, quote, start := 0, byte(0), 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == sep && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func parseColumns(s string) ([]Column, error) {
	var cols []Column
	for _, item := range splitTop(s, ',') {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := splitTop(item, ':')
		col, err := parseKey(strings.TrimSpace(parts[0]))
		if err != nil {
			return nil, err
		}
		for _, attr := range parts[1:] {
			attr = strings.TrimSpace(attr)
			switch {
			case strings.HasPrefix(attr, "label="):
				col.Label = unquote(strings.TrimPrefix(attr, "label="))
			case attr == "optional":
				col.Optional = true
			case strings.HasPrefix(attr, "sort="), strings.HasPrefix(attr, "align="), attr == "reverse":
				// Accepted for gcloud scripts; ordering comes from --sort-by.
			default:
				return nil, fmt.Errorf("unknown key attribute %q (known: label=, optional)", attr)
			}
		}
		cols = append(cols, col)
	}
	return cols, nil
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

func parseKey(s string) (Column, error) {
	var col Column
	for _, seg := range splitTop(s, '.') {
		if i := strings.IndexByte(seg, '('); i >= 0 && strings.HasSuffix(seg, ")") {
			t := Transform{Name: seg[:i]}
			if !knownTransforms[t.Name] {
				return col, fmt.Errorf("unknown transform %s() (known: basename, scope, segment, len, join)", t.Name)
			}
			if args := strings.TrimSpace(seg[i+1 : len(seg)-1]); args != "" {
				for _, a := range strings.Split(args, ",") {
					t.Args = append(t.Args, unquote(strings.TrimSpace(a)))
				}
			}
			col.Transforms = append(col.Transforms, t)
			continue
		}
		if len(col.Transforms) > 0 {
			return col, fmt.Errorf("key %q: a key segment after a transform", s)
		}
		if seg == "" {
			return col, fmt.Errorf("key %q has an empty segment", s)
		}
		col.Key = append(col.Key, seg)
	}
	return col, nil
}

// Record turns a message into a record: its protojson form, camelCase.
func Record(m proto.Message) (any, error) {
	raw, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// Lookup returns the value at a dotted key path, or nil. A segment may
// index a list: credentials[0].
func Lookup(v any, key []string) any {
	for _, k := range key {
		index := -1
		if i := strings.IndexByte(k, '['); i > 0 && strings.HasSuffix(k, "]") {
			n, err := strconv.Atoi(k[i+1 : len(k)-1])
			if err != nil {
				return nil
			}
			k, index = k[:i], n
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
		if index >= 0 {
			l, ok := v.([]any)
			if !ok || index >= len(l) {
				return nil
			}
			v = l[index]
		}
	}
	return v
}

// Print writes records in the format of spec. list says whether the
// records are a list's (yaml separates them with ---, json makes an array).
func (s *Spec) Print(w io.Writer, records []any, list bool) error {
	if (s.Kind == JSON || s.Kind == YAML) && len(s.Columns) > 0 {
		records = s.project(records)
	}
	switch s.Kind {
	case None:
		return nil
	case JSON:
		var v any = records
		if !list {
			if len(records) == 0 {
				return nil
			}
			v = records[0]
		} else if records == nil {
			v = []any{}
		}
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case YAML:
		for _, r := range records {
			if list {
				if _, err := io.WriteString(w, "---\n"); err != nil {
					return err
				}
			}
			if err := writeYAML(w, r); err != nil {
				return err
			}
		}
		return nil
	}
	cols := s.Columns
	if len(cols) == 0 {
		return fmt.Errorf("--format=%s needs keys, such as %s(id,numId)", s.Kind, s.Kind)
	}
	cells := make([][]string, len(records))
	present := make([]bool, len(cols))
	for i, r := range records {
		cells[i] = make([]string, len(cols))
		for j, c := range cols {
			v := c.apply(r)
			cells[i][j] = render(v, s.Kind)
			if cells[i][j] != "" {
				present[j] = true
			}
		}
	}
	var keep []int
	for j, c := range cols {
		if !c.Optional || present[j] {
			keep = append(keep, j)
		}
	}
	rows := make([][]string, 0, len(records)+1)
	if !s.NoHeading && s.Kind != Value {
		h := make([]string, len(keep))
		for i, j := range keep {
			h[i] = cols[j].Heading()
		}
		rows = append(rows, h)
	}
	for _, r := range cells {
		row := make([]string, len(keep))
		for i, j := range keep {
			row[i] = r[j]
		}
		rows = append(rows, row)
	}
	switch s.Kind {
	case Value:
		return writeRows(w, rows, "\t")
	case CSV:
		return writeCSV(w, rows)
	}
	return writeTable(w, rows, s.Box)
}

// project keeps only the keys of yaml(...) or json(...), nested as in
// the record.
func (s *Spec) project(records []any) []any {
	out := make([]any, len(records))
	for i, r := range records {
		m := map[string]any{}
		for _, c := range s.Columns {
			v := c.apply(r)
			if v == nil || len(c.Key) == 0 {
				continue
			}
			at := m
			for _, k := range c.Key[:len(c.Key)-1] {
				next, ok := at[k].(map[string]any)
				if !ok {
					next = map[string]any{}
					at[k] = next
				}
				at = next
			}
			at[c.Key[len(c.Key)-1]] = v
		}
		out[i] = m
	}
	return out
}

// WithColumns returns s with cols as its keys when s names none (as
// --format=csv or --format=table alone), so a command's default columns
// apply.
func (s *Spec) WithColumns(cols []Column) *Spec {
	if len(s.Columns) > 0 || s.Kind == JSON || s.Kind == YAML || s.Kind == None {
		return s
	}
	c := *s
	c.Columns = cols
	return &c
}

// MustColumns parses the keys of a table(...) spec written in the code.
func MustColumns(spec string) []Column {
	s, err := Parse(spec)
	if err != nil {
		panic(err)
	}
	return s.Columns
}

// Heading is the column's header: its label, or its last key in
// UPPER_SNAKE case.
func (c Column) Heading() string {
	if c.Label != "" {
		return c.Label
	}
	if len(c.Key) == 0 {
		return ""
	}
	return upperSnake(c.Key[len(c.Key)-1])
}

func upperSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' && i > 0 {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

func writeRows(w io.Writer, rows [][]string, sep string) error {
	var b strings.Builder
	for _, r := range rows {
		b.WriteString(strings.TrimRight(strings.Join(r, sep), sep))
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeCSV(w io.Writer, rows [][]string) error {
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			if i > 0 {
				b.WriteByte(',')
			}
			if strings.ContainsAny(c, ",\"\n\r") {
				c = `"` + strings.ReplaceAll(c, `"`, `""`) + `"`
			}
			b.WriteString(c)
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeTable(w io.Writer, rows [][]string, box bool) error {
	if len(rows) == 0 {
		return nil
	}
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	line := func(l, m, r string) {
		b.WriteString(l)
		for i, wd := range widths {
			if i > 0 {
				b.WriteString(m)
			}
			b.WriteString(strings.Repeat("─", wd+2))
		}
		b.WriteString(r + "\n")
	}
	if box {
		line("┌", "┬", "┐")
	}
	for n, r := range rows {
		if box {
			b.WriteString("│")
			for i, c := range r {
				b.WriteString(" " + c + strings.Repeat(" ", widths[i]-len([]rune(c))) + " │")
			}
			b.WriteString("\n")
			if n == 0 {
				line("├", "┼", "┤")
			}
			continue
		}
		var l strings.Builder
		for i, c := range r {
			if i > 0 {
				l.WriteString("  ")
			}
			l.WriteString(c)
			if i < len(r)-1 {
				l.WriteString(strings.Repeat(" ", widths[i]-len([]rune(c))))
			}
		}
		b.WriteString(strings.TrimRight(l.String(), " ") + "\n")
	}
	if box {
		line("└", "┴", "┘")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// render turns a cell value into text: gcloud's Python spelling of
// booleans, lists joined with ';' in value and csv and ',' in tables,
// maps as k=v.
func render(v any, kind Kind) string {
	sep := ","
	if kind != Table {
		sep = ";"
	}
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		if x {
			return "True"
		}
		return "False"
	case json.Number:
		return x.String()
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = render(e, kind)
		}
		return strings.Join(parts, sep)
	case map[string]any:
		keys := sortedKeys(x)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + render(x[k], kind)
		}
		return strings.Join(parts, sep)
	}
	return fmt.Sprint(v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
