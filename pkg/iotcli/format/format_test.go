package format_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/iotcli/format"
)

func records(t *testing.T, js string) []any {
	t.Helper()
	var v []any
	d := json.NewDecoder(strings.NewReader(js))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

const devices = `[
 {"id": "b-dev", "numId": "2", "blocked": true, "metadata": {"k": "v"}, "credentials": [{"publicKey": {"format": "ES256_PEM"}}]},
 {"id": "a-dev", "numId": "1", "name": "projects/p/locations/l/registries/r/devices/1"},
 {"id": "gw", "numId": "3", "gatewayConfig": {"gatewayType": "GATEWAY"}}
]`

func TestPrinters(t *testing.T) {
	for _, tc := range []struct{ format, want string }{
		{"value(id,numId)", "b-dev\t2\na-dev\t1\ngw\t3\n"},
		{"value(id,blocked)", "b-dev\tTrue\na-dev\ngw\n"},
		{"csv(id,metadata)", "ID,METADATA\nb-dev,k=v\na-dev,\ngw,\n"},
		{"table(id,gatewayConfig.gatewayType:label=TYPE)", "ID     TYPE\nb-dev\na-dev\ngw     GATEWAY\n"},
		{"table(id,blocked:optional,name:optional)[no-heading]", "b-dev  True\na-dev        projects/p/locations/l/registries/r/devices/1\ngw\n"},
		{"table(id,name.basename(),credentials.len():label=N:optional)", "ID     NAME  N\nb-dev        1\na-dev  1\ngw\n"},
		{"value(name.segment(3),name.scope(registries))", "\nl\tr/devices/1\n\n"},
		{"value(credentials[0].publicKey.format)", "ES256_PEM\n\n\n"},
		{"yaml", "---\nblocked: true\ncredentials:\n- publicKey:\n    format: ES256_PEM\nid: b-dev\nmetadata:\n  k: v\nnumId: '2'\n---\nid: a-dev\nname: projects/p/locations/l/registries/r/devices/1\nnumId: '1'\n---\ngatewayConfig:\n  gatewayType: GATEWAY\nid: gw\nnumId: '3'\n"},
		{"none", ""},
		{"yaml(id,gatewayConfig.gatewayType)", "---\nid: b-dev\n---\nid: a-dev\n---\ngatewayConfig:\n  gatewayType: GATEWAY\nid: gw\n"},
	} {
		spec, err := format.Parse(tc.format)
		if err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		var out strings.Builder
		if err := spec.Print(&out, records(t, devices), true); err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		if out.String() != tc.want {
			t.Errorf("--format=%s:\n%q\nwant\n%q", tc.format, out.String(), tc.want)
		}
	}
}

func TestJSONIsSortedAndIndented(t *testing.T) {
	spec, _ := format.Parse("json")
	var out strings.Builder
	if err := spec.Print(&out, nil, true); err != nil || out.String() != "[]\n" {
		t.Errorf("empty list: %q, %v", out.String(), err)
	}
	out.Reset()
	if err := spec.Print(&out, records(t, `[{"z": "<&>", "a": {"c": 1, "b": 2}}]`), false); err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"a\": {\n    \"b\": 2,\n    \"c\": 1\n  },\n  \"z\": \"<&>\"\n}\n"; out.String() != want {
		t.Errorf("json:\n%s\nwant\n%s", out.String(), want)
	}
}

func TestYAMLQuotesWhatWouldChangeType(t *testing.T) {
	spec, _ := format.Parse("yaml")
	var out strings.Builder
	if err := spec.Print(&out, records(t, `[{"a": "2020-12-30T10:50:22Z", "b": "true", "c": "plain", "d": "", "e": "12", "f": 3}]`), false); err != nil {
		t.Fatal(err)
	}
	want := "a: '2020-12-30T10:50:22Z'\nb: 'true'\nc: plain\nd: ''\ne: '12'\nf: 3\n"
	if out.String() != want {
		t.Errorf("yaml:\n%s\nwant\n%s", out.String(), want)
	}
}

func TestListOptions(t *testing.T) {
	for _, tc := range []struct {
		opts format.ListOptions
		want string
	}{
		{format.ListOptions{Filter: "id:*dev"}, "b-dev a-dev"},
		{format.ListOptions{Filter: "id:A-DEV"}, "a-dev"},
		{format.ListOptions{Filter: "blocked=true"}, "b-dev"},
		{format.ListOptions{Filter: "NOT blocked=true"}, "a-dev gw"},
		{format.ListOptions{Filter: "id=gw OR metadata.k=v"}, "b-dev gw"},
		{format.ListOptions{Filter: "gatewayConfig.gatewayType:*"}, "gw"},
		{format.ListOptions{SortBy: []string{"id"}}, "a-dev b-dev gw"},
		{format.ListOptions{SortBy: []string{"~numId"}, Limit: 2}, "gw b-dev"},
		{format.ListOptions{SortBy: []string{"id"}, Filter: "id:*dev", Limit: 1}, "a-dev"},
	} {
		got, err := tc.opts.Apply(records(t, devices))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range got {
			ids = append(ids, format.Lookup(r, []string{"id"}).(string))
		}
		if strings.Join(ids, " ") != tc.want {
			t.Errorf("%+v: %v, want %s", tc.opts, ids, tc.want)
		}
	}
}

func TestBadFormatsAndFilters(t *testing.T) {
	for _, f := range []string{"xml", "table(id", "table(id.nosuch())", "table(id:wide)", "value(id)[huge]"} {
		_, err := format.Parse(f)
		var pe *format.ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "expected json, yaml") {
			t.Errorf("Parse(%q) = %v, want a ParseError naming the syntax", f, err)
		}
	}
	for _, f := range []string{"OR id:x", "id"} {
		if _, err := format.ParseFilter(f); err == nil {
			t.Errorf("ParseFilter(%q) accepted", f)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"json", "table(id,name.basename():label=X)[box]", "value(a.b[0],c.scope(\"x\"))", "csv(a:optional)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := format.Parse(s)
		if err != nil {
			return
		}
		var out strings.Builder
		_ = spec.Print(&out, records(t, devices), true)
	})
}
