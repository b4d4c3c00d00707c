package synapse

import "github.com/jackc/pgx/v5"

// ParseDatabaseURL parses the URL of a Synapse database (a source, or a
// restore's target) with errors that say what form is expected and never
// repeat a password.
func ParseDatabaseURL(s string) (*pgx.ConnConfig, error) { return parseDatabaseURL(s) }
