package pgproc

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// A cluster starts, makes a database Synapse accepts (UTF8, C collation),
// drops it, and leaves nothing behind when stopped.
func TestCluster(t *testing.T) {
	if _, err := BinDir(); err != nil {
		if os.Getenv("FERRY_REQUIRE_SERVICES") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	c, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ctx := context.Background()
	url, err := c.CreateDatabase(ctx, "synapse")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var encoding, collation string
	err = conn.QueryRow(ctx, `SELECT pg_encoding_to_char(encoding), datcollate FROM pg_database WHERE datname = current_database()`).Scan(&encoding, &collation)
	conn.Close(ctx)
	if err != nil || encoding != "UTF8" || collation != "C" {
		t.Errorf("database: %s %s %v", encoding, collation, err)
	}
	if err := c.DropDatabase(ctx, "synapse"); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("%s is still there after Stop: %v", c.Dir, err)
	}
}
