package iotcli

import (
	"encoding/json"
	"fmt"
)

// jsonOf turns what yaml.Unmarshal made into JSON (its maps have string
// keys once they come from JSON-like documents).
func jsonOf(v any) ([]byte, error) {
	return json.Marshal(normalize(v))
}

func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = normalize(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	}
	return v
}
