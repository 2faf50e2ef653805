package manager

import (
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestJSONPathAt(t *testing.T) {
	for _, tc := range []struct {
		doc, want string
	}{
		{"\"\xff\"", ""},
		{"{\"a\":\"\xff\"}", "a"},
		{"{\"a\":1,\"b\":\"\xff\"}", "b"},
		{"{\"a\":{\"b\":[1,{\"c\":\"\xff\"}]}}", "a.b[1].c"},
		{"[[1,2],[3,\"\xff\"]]", "[1][1]"},
		{"{\"a\":[],\"b\":{},\"c\":\xff}", "c"},
		{"{\"a\":1,\"\xff\":2}", "\ufffd"},
	} {
		if got := jsonPathAt([]byte(tc.doc), firstInvalidUTF8([]byte(tc.doc))); got != tc.want {
			t.Errorf("jsonPathAt(%q) = %q, want %q", tc.doc, got, tc.want)
		}
	}
}

func TestStatusMessagesAreUTF8(t *testing.T) {
	err := validUTF8(status.Error(codes.InvalidArgument, "bad id \"a\xffb\""))
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !utf8.ValidString(st.Message()) || st.Message() != "bad id \"a\ufffdb\"" {
		t.Errorf("validUTF8: %v", err)
	}
}
