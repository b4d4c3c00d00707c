// Package sqlq holds the one piece of SQL text handling Ferry's
// database/sql code shares across SQLite and PostgreSQL.
package sqlq

import (
	"strconv"
	"strings"
)

// Dollar rewrites ? placeholders into PostgreSQL's $1, $2, ... . Queries
// must not contain a literal '?' (none of Ferry's do).
func Dollar(query string) string {
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
