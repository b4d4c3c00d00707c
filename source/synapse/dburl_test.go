package synapse

import (
	"strings"
	"testing"
)

// A database URL that is not one says what form is expected, shows the
// user and host, and never the password.
func TestDatabaseURLErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"notaurl", `"notaurl" is not a PostgreSQL database URL: expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`},
		{"ferry:s3cret@db/synapse", `"ferry:xxxxx@db/synapse" is not a PostgreSQL database URL`},
		{"mysql://ferry:s3cret@db/synapse", "mysql://ferry:xxxxx@db/synapse is a mysql:// URL, and Synapse's database must be PostgreSQL"},
		{"postgres://ferry:s3 cret@db:x/synapse", "postgres://ferry:xxxxx@db:x/synapse is not a valid URL"},
		{"postgres://ferry:s3cret@db:99999999/synapse", "postgres://ferry:xxxxx@db:99999999/synapse does not parse as a PostgreSQL URL"},
		{"host=db password=s3cret bogus", "the key=value connection string does not parse"},
	} {
		_, err := parseDatabaseURL(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "s3 cret") {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
	if _, err := parseDatabaseURL("postgres://ferry_reader@db/synapse?sslmode=disable"); err != nil {
		t.Error(err)
	}
}
