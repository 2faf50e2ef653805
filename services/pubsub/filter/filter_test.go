package filter_test

import (
	"errors"
	"testing"

	"github.com/passerelle-iot/passerelle/services/pubsub/filter"
)

func TestMatch(t *testing.T) {
	attrs := map[string]string{"deviceId": "dev-1", "subFolder": "temp/room1", "projectId": "p"}
	cases := []struct {
		filter string
		want   bool
	}{
		{``, true},
		{`attributes.deviceId = "dev-1"`, true},
		{`attributes.deviceId = "dev-2"`, false},
		{`attributes.deviceId != "dev-2"`, true},
		{`attributes.missing != "x"`, true},
		{`attributes:subFolder`, true},
		{`attributes:gatewayId`, false},
		{`NOT attributes:gatewayId`, true},
		{`-attributes:gatewayId`, true},
		{`hasPrefix(attributes.subFolder, "temp/")`, true},
		{`hasPrefix(attributes.subFolder, "hum/")`, false},
		{`hasPrefix(attributes.missing, "")`, false},
		{`attributes.deviceId = "dev-1" AND attributes.projectId = "p"`, true},
		{`attributes.deviceId = "dev-1" AND attributes.projectId = "q"`, false},
		{`attributes.deviceId = "x" OR attributes.projectId = "p"`, true},
		{`(attributes.deviceId = "x" OR attributes.projectId = "p") AND NOT attributes:gatewayId`, true},
		{`NOT (attributes.deviceId = "dev-1")`, false},
		{`attributes."deviceId" = "dev-1"`, true},
		{`attributes.deviceId = "dev\x2d1"`, true},
	}
	for _, c := range cases {
		f, err := filter.Parse(c.filter)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.filter, err)
			continue
		}
		if got := f.Match(attrs); got != c.want {
			t.Errorf("%q matched %v, want %v", c.filter, got, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	long := `attributes.k = "` + string(make([]byte, 300)) + `"`
	for _, s := range []string{
		`attributes.k`, `attributes.k = v`, `attributes.k = "v" AND attributes.a = "b" OR attributes:c`,
		`(attributes:k`, `hasPrefix(attributes.k "p")`, `deviceId = "x"`, `attributes.k = "unterminated`,
		`attributes:k attributes:j`, `NOT`, long, `attributes: = "x"`,
	} {
		if _, err := filter.Parse(s); !errors.Is(err, filter.ErrInvalid) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(`(attributes.a = "b" OR hasPrefix(attributes.c, "d")) AND NOT attributes:e`)
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := filter.Parse(s)
		if err == nil {
			flt.Match(map[string]string{"a": "b"})
		}
	})
}
