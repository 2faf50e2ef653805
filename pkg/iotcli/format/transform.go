package format

import (
	"fmt"
	"strconv"
	"strings"
)

var knownTransforms = map[string]bool{"basename": true, "scope": true, "segment": true, "len": true, "join": true}

// apply looks the column's key up in r and applies its transforms.
func (c Column) apply(r any) any {
	v := Lookup(r, c.Key)
	for _, t := range c.Transforms {
		v = t.apply(v)
	}
	return v
}

func (t Transform) apply(v any) any {
	switch t.Name {
	case "len":
		switch x := v.(type) {
		case []any:
			return strconv.Itoa(len(x))
		case map[string]any:
			return strconv.Itoa(len(x))
		case string:
			return strconv.Itoa(len(x))
		}
		return nil
	case "join":
		sep := ","
		if len(t.Args) > 0 {
			sep = t.Args[0]
		}
		if l, ok := v.([]any); ok {
			parts := make([]string, len(l))
			for i, e := range l {
				parts[i] = render(e, Value)
			}
			return strings.Join(parts, sep)
		}
		return v
	}
	s, ok := v.(string)
	if !ok {
		return v
	}
	switch t.Name {
	case "basename":
		return s[strings.LastIndexByte(s, '/')+1:]
	case "scope":
		// The part of a resource path after the collection named by the
		// argument: scope("locations") of .../locations/us/registries/r is
		// us/registries/r.
		if len(t.Args) == 0 {
			return s
		}
		marker := "/" + t.Args[0] + "/"
		if i := strings.Index("/"+s, marker); i >= 0 {
			return s[i+len(marker)-1:]
		}
		return ""
	case "segment":
		n := 0
		if len(t.Args) > 0 {
			n, _ = strconv.Atoi(t.Args[0])
		}
		parts := strings.Split(s, "/")
		if n < 0 {
			n += len(parts)
		}
		if n < 0 || n >= len(parts) {
			return ""
		}
		return parts[n]
	}
	return fmt.Sprint(v)
}
