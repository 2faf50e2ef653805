package pubsub

import (
	"encoding/base64"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// pageOf returns the page of sorted names after the token's, and the
// token of the next page ("" on the last). A token is the last name of the
// page before it, so pages stay right when names come and go in between.
func pageOf(names []string, size int32, token string) ([]string, string, error) {
	switch {
	case size < 0:
		return nil, "", status.Error(codes.InvalidArgument, "page_size must not be negative")
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	start := 0
	if token != "" {
		after, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil {
			return nil, "", status.Error(codes.InvalidArgument, "invalid page_token: pass the next_page_token of the previous page")
		}
		for start < len(names) && names[start] <= string(after) {
			start++
		}
	}
	end := min(start+int(size), len(names))
	page := names[start:end]
	next := ""
	if end < len(names) {
		next = base64.RawURLEncoding.EncodeToString([]byte(page[len(page)-1]))
	}
	return page, next, nil
}
