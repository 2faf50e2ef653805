package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// runProbe is a health check for container images that have no curl:
// passerelle probe URL gets URL and exits 0 on a 2xx answer, 1 otherwise
// (printing why), 2 on a usage error.
func runProbe(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "Usage: passerelle probe URL   (such as http://127.0.0.1:9090/readyz)")
		if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
			return 0
		}
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		fmt.Fprintf(stderr, "passerelle probe: %v\n", err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "passerelle probe: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return 0
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(stderr, "passerelle probe: %s: %s %s\n", args[0], resp.Status, strings.TrimSpace(string(body)))
	return 1
}
