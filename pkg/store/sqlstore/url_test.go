package sqlstore_test

import (
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
)

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"passerelle-data/passerelle.db", ""},
		{"/var/lib/passerelle/p.db", ""},
		{"sqlite:p.db", ""},
		{"file:p.db", ""},
		{"postgres://postgres@127.0.0.1:5432/test?sslmode=disable", ""},
		{"postgresql://u:pw@h/db", ""},
		{"", "empty"},
		{"postgress://u@h/db", `scheme "postgress://" is not supported`},
		{"mysql://root@127.0.0.1/test", "give postgres://"},
		{"sqlite:///abs.db", "not supported"},
		{"postgres://u@h:notaport/db", "does not parse"},
	} {
		err := sqlstore.CheckURL(tc.url)
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckURL(%q) = %v, want %q", tc.url, err, tc.want)
		}
	}
}

// Open refuses what CheckURL refuses, instead of making a SQLite file
// named after the URL.
func TestOpenRefusesUnknownSchemes(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if _, err := sqlstore.Open(t.Context(), nil, "mysql://root@127.0.0.1/test"); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("Open(mysql://...) = %v", err)
	}
}
