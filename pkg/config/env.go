package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Env is the environment a command reads its PASSERELLE_* settings from:
// OSEnv in production, MapEnv in tests.
type Env interface {
	// LookupEnv is os.LookupEnv.
	LookupEnv(name string) (string, bool)
	// Environ lists the variables as os.Environ does ("NAME=value").
	Environ() []string
}

// OSEnv is the process's environment.
func OSEnv() Env { return osEnv{} }

type osEnv struct{}

func (osEnv) LookupEnv(name string) (string, bool) { return os.LookupEnv(name) }
func (osEnv) Environ() []string                    { return os.Environ() }

// MapEnv is an environment holding just m (nil: an empty one).
func MapEnv(m map[string]string) Env { return mapEnv(m) }

type mapEnv map[string]string

func (m mapEnv) LookupEnv(name string) (string, bool) { v, ok := m[name]; return v, ok }
func (m mapEnv) Environ() []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// testPrefix starts the variables of Passerelle's own tests, which no
// command reads.
const testPrefix = EnvPrefix + "TEST_"

// UnknownEnv returns a warning for each PASSERELLE_* variable of env that
// is no flag of fs: a misspelling would otherwise be ignored in silence.
// Each names the closest setting when one is close.
func UnknownEnv(fs *flag.FlagSet, env Env) []string {
	known := map[string]bool{}
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		known[EnvName(f.Name)] = true
		names = append(names, EnvName(f.Name))
	})
	var warnings []string
	for _, kv := range env.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || strings.HasPrefix(name, testPrefix) || known[name] {
			continue
		}
		w := fmt.Sprintf("environment variable %s is not a setting of %s and is ignored", name, fs.Name())
		if best := closest(name, names); best != "" {
			w += "; did you mean " + best + "?"
		} else {
			w += " (--help lists the settings; each flag --x-y is PASSERELLE_X_Y)"
		}
		warnings = append(warnings, w)
	}
	sort.Strings(warnings)
	return warnings
}

// closest is the name of candidates nearest to name by edit distance, when
// it is near enough to be a likely misspelling.
func closest(name string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		d := editDistance(name, c)
		if bestDist < 0 || d < bestDist || (d == bestDist && c < best) {
			best, bestDist = c, d
		}
	}
	short := strings.TrimPrefix(name, EnvPrefix)
	if bestDist < 0 || bestDist > max(2, len(short)/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ApplyEnv sets each flag of fs that the command line did not set from its
// environment variable (EnvName), read with lookup (os.LookupEnv in
// production). Call it after fs.Parse: flags win over the environment. A
// value the flag refuses is an error naming the variable, the value and
// what the flag accepts.
func ApplyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		env := EnvName(f.Name)
		v, ok := lookup(env)
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s=%q: %s", env, v, explainValueError(f, err)))
		}
	})
	return errors.Join(errs...)
}

// explainValueError turns the flag package's terse "parse error" into what
// the flag accepts.
func explainValueError(f *flag.Flag, err error) string {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return "not a boolean: give true or false (1, 0, t, f, TRUE and FALSE work too)"
	}
	kind, _ := flag.UnquoteUsage(f)
	switch kind {
	case "int", "uint":
		return "not a whole number"
	case "float":
		return "not a number"
	case "duration":
		return "not a duration: give a number with a unit, such as 500ms, 10s or 5m"
	}
	return err.Error()
}
