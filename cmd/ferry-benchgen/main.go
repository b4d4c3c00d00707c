// Command ferry-benchgen inflates a restored synapse-1.67 fixture database
// for export benchmarks (see internal/benchgen and scripts/bench-export).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/ferry-matrix/ferry/internal/benchgen"
)

func main() {
	var o benchgen.Options
	flag.StringVar(&o.Database, "db", "", "PostgreSQL URL of a restored synapse-1.67 fixture")
	flag.StringVar(&o.SigningKey, "signing-key", "testdata/synapse-1.67/fixture.test.signing.key", "the fixture's signing key")
	flag.IntVar(&o.Events, "events", 1000000, "timeline events to add")
	flag.IntVar(&o.Users, "users", 2000, "users to add")
	version := flag.Bool("version", false, "print the generator version (cache key) and exit")
	flag.Parse()
	if *version {
		fmt.Println(benchgen.Version)
		return
	}
	start := time.Now()
	o.Log = func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%6.1fs "+format+"\n", append([]any{time.Since(start).Seconds()}, args...)...)
	}
	if err := benchgen.Run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-benchgen:", err)
		os.Exit(1)
	}
	o.Log("done")
}
