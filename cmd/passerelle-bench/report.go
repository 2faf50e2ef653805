package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// The report reads the lines the scenarios print (label, target,
// key=value...) and prints one markdown table: for each figure, each
// target's value (the median, and the range when a figure was measured
// more than once) and Passerelle's ratio to each other target.

// headline are the figures the report shows, in this order, with the
// direction that is better.
var headline = []struct {
	key, name string
	lower     bool
}{
	{"kib_per_conn", "KiB per connection", true},
	{"connects_per_s", "connects/s", false},
	{"target_cpu_us_per_connect", "broker CPU us per connect", true},
	{"msgs_per_s", "msg/s", false},
	{"target_cpu_us_per_msg", "broker CPU us per msg", true},
	{"p99_ms", "delivery p99 ms, from the call's return", true},
	{"p99_from_call_ms", "delivery p99 ms, from the call", true},
	{"rpc_p99_ms", "admin call p99 ms", true},
}

// reportTargets are the targets in the table's column order; others
// follow in the order they appear.
var reportTargets = []string{"passerelle", "mosquitto", "nats"}

type figures struct {
	labels  []string
	targets []string
	vals    map[string]map[string]map[string][]float64 // label, target, key
}

func parseResults(r io.Reader, f *figures) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || strings.HasPrefix(fields[0], "#") || strings.HasPrefix(fields[0], "=") || strings.Contains(fields[0], "=") {
			continue
		}
		label, target := fields[0], strings.TrimSuffix(fields[1], "/tls")
		if _, ok := f.vals[label]; !ok {
			f.vals[label] = map[string]map[string][]float64{}
			f.labels = append(f.labels, label)
		}
		if _, ok := f.vals[label][target]; !ok {
			f.vals[label][target] = map[string][]float64{}
			if !slices.Contains(f.targets, target) {
				f.targets = append(f.targets, target)
			}
		}
		for _, kv := range fields[2:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				continue
			}
			f.vals[label][target][k] = append(f.vals[label][target][k], x)
		}
	}
	return sc.Err()
}

// report prints the table of the results in files ("-": standard input).
func report(w io.Writer, files []string) error {
	if len(files) == 0 {
		return fmt.Errorf("give the results files (the lines of the scenarios)")
	}
	f := &figures{vals: map[string]map[string]map[string][]float64{}}
	for _, name := range files {
		var r io.Reader = os.Stdin
		if name != "-" {
			fh, err := os.Open(name)
			if err != nil {
				return err
			}
			defer fh.Close()
			r = fh
		}
		if err := parseResults(r, f); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	var cols []string
	for _, t := range reportTargets {
		if slices.Contains(f.targets, t) {
			cols = append(cols, t)
		}
	}
	for _, t := range f.targets {
		if !slices.Contains(cols, t) {
			cols = append(cols, t)
		}
	}
	var others []string
	for _, t := range cols {
		if t != "passerelle" {
			others = append(others, t)
		}
	}
	fmt.Fprintf(w, "| figure | measure |")
	for _, t := range cols {
		fmt.Fprintf(w, " %s |", t)
	}
	for _, t := range others {
		fmt.Fprintf(w, " passerelle/%s |", t)
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "|---|---|"+strings.Repeat("---|", len(cols)+len(others)))
	fmt.Fprintln(w)
	for _, label := range f.labels {
		for _, h := range headline {
			present := false
			for _, t := range cols {
				if len(f.vals[label][t][h.key]) > 0 {
					present = true
				}
			}
			if !present {
				continue
			}
			name := h.name
			if h.lower {
				name += " (lower is better)"
			}
			fmt.Fprintf(w, "| %s | %s |", label, name)
			for _, t := range cols {
				fmt.Fprintf(w, " %s |", spread(f.vals[label][t][h.key]))
			}
			p := median(f.vals[label]["passerelle"][h.key])
			for _, t := range others {
				o := median(f.vals[label][t][h.key])
				if math.IsNaN(p) || math.IsNaN(o) || o == 0 {
					fmt.Fprint(w, "  |")
					continue
				}
				fmt.Fprintf(w, " %.2fx |", p/o)
			}
			fmt.Fprintln(w)
		}
	}
	return nil
}

// spread is the median of xs, with the range when there are several.
func spread(xs []float64) string {
	if len(xs) == 0 {
		return ""
	}
	if len(xs) == 1 {
		return format(xs[0])
	}
	s := slices.Sorted(slices.Values(xs))
	return fmt.Sprintf("%s (%s-%s)", format(median(s)), format(s[0]), format(s[len(s)-1]))
}

// median of xs; NaN when empty (NaN values count as absent).
func median(xs []float64) float64 {
	var s []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			s = append(s, x)
		}
	}
	if len(s) == 0 {
		return math.NaN()
	}
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
