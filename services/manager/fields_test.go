package manager

import (
	"encoding/json"
	"testing"
)

func TestParseAndApplyFields(t *testing.T) {
	doc := `{"a":1,"b":{"c":2,"d":{"e":3,"f":4}},"list":[{"x":1,"y":2},{"x":3,"y":4}],"n":"9007199254740993"}`
	for _, tc := range []struct{ fields, want string }{
		{"a", `{"a":1}`},
		{"a,b/c", `{"a":1,"b":{"c":2}}`},
		{"b(c,d/e)", `{"b":{"c":2,"d":{"e":3}}}`},
		{"b/d(f)", `{"b":{"d":{"f":4}}}`},
		{"b,b/c", `{"b":{"c":2,"d":{"e":3,"f":4}}}`}, // whole wins, in either order
		{"b/c,b", `{"b":{"c":2,"d":{"e":3,"f":4}}}`},
		{"list/x", `{"list":[{"x":1},{"x":3}]}`},
		{"list(y),missing", `{"list":[{"y":2},{"y":4}]}`},
		{"b/*", `{"b":{"c":2,"d":{"e":3,"f":4}}}`},
		{"b/*/e", `{"b":{"c":2,"d":{"e":3}}}`},
		{" a , n ", `{"a":1,"n":"9007199254740993"}`},
	} {
		sel, err := parseFields(tc.fields)
		if err != nil {
			t.Errorf("parseFields(%q): %v", tc.fields, err)
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(doc), &v); err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(sel.apply(v))
		if string(got) != tc.want {
			t.Errorf("fields=%q: %s, want %s", tc.fields, got, tc.want)
		}
	}
	for _, bad := range []string{"", ",", "a,", "a(", "a(b", "a)", "a/", "(a)", "a//b", "a()"} {
		if _, err := parseFields(bad); err == nil {
			t.Errorf("parseFields(%q): no error", bad)
		}
	}
}
