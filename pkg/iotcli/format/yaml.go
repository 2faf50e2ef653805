package format

import (
	"encoding/json"
	"io"

	"go.yaml.in/yaml/v3"
)

// writeYAML writes one record as gcloud's YAML printer did: keys sorted,
// two-space indent, sequence items at their parent's indent, and strings
// that YAML would read as something else (numbers, timestamps) in single
// quotes.
func writeYAML(w io.Writer, r any) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	enc.CompactSeqIndent()
	if err := enc.Encode(yamlNode(r)); err != nil {
		return err
	}
	return enc.Close()
}

func yamlNode(v any) *yaml.Node {
	switch x := v.(type) {
	case map[string]any:
		n := &yaml.Node{Kind: yaml.MappingNode}
		for _, k := range sortedKeys(x) {
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, yamlNode(x[k]))
		}
		return n
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		for _, e := range x {
			n.Content = append(n.Content, yamlNode(e))
		}
		return n
	case string:
		n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: x}
		var probe any
		if err := yaml.Unmarshal([]byte(x), &probe); x == "" || err != nil || probe != x {
			n.Style = yaml.SingleQuotedStyle
		}
		if len(x) > 80 || containsNewline(x) {
			n.Style = 0
		}
		return n
	case bool:
		if x {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"}
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "false"}
	case json.Number:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: x.String()}
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	}
	b, _ := json.Marshal(v)
	return &yaml.Node{Kind: yaml.ScalarNode, Value: string(b)}
}

func containsNewline(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return true
		}
	}
	return false
}
