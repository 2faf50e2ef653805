package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// metricName matches a metric in a PromQL expression.
var metricName = regexp.MustCompile(`\b(?:passerelle|hub|rpc|go|process)_[a-z0-9_]+`)

// TestGrafanaDashboard checks deploy/grafana-dashboard.json: it parses as
// a dashboard, every panel queries the Prometheus data source variable, and
// every metric it reads is one the README documents (the names /metrics
// serves, which cmd/passerelle's TestServeHTTPBridgeAndMetrics scrapes).
func TestGrafanaDashboard(t *testing.T) {
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr       string `json:"expr"`
				Datasource struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	data, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard %q has %d panels", d.Title, len(d.Panels))
	}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q queries data source %q, not the ${datasource} variable", p.Title, tg.Datasource.UID)
			}
			names := metricName.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: no metric in %s", p.Title, tg.Expr)
			}
			for _, n := range names {
				base := strings.TrimSuffix(n, "_bucket")
				if !strings.Contains(string(readme), "`"+base+"`") && !strings.HasPrefix(base, "go_") && !strings.HasPrefix(base, "process_") {
					t.Errorf("panel %q reads %s, which the README's metric table does not name", p.Title, base)
				}
			}
		}
	}
}
