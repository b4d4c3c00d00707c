// Package flagvalue holds flag.Value (and pflag.Value) types shared by the CLI and the
// bot's chat commands, so both accept the same spellings.
package flagvalue

import (
	"fmt"
	"strings"
	"time"
)

// List collects a repeatable, comma-separated option
// (--rooms '!a:x,!b:x' --rooms '!c:x').
type List []string

func (l *List) String() string { return strings.Join(*l, ",") }

// Type names the value in command-line help (pflag.Value).
func (l *List) Type() string { return "list" }

// Set adds the comma-separated values of v.
func (l *List) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// Time is an RFC 3339 time, a minute (2026-11-23T15:04) or a date (UTC
// midnight); unset is the zero time.
type Time struct{ T time.Time }

func (f *Time) String() string {
	if f.T.IsZero() {
		return ""
	}
	return f.T.Format(time.RFC3339)
}

// Type names the value in command-line help (pflag.Value).
func (f *Time) Type() string { return "time" }

// Set parses v.
func (f *Time) Set(v string) error {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			f.T = t
			return nil
		}
	}
	return fmt.Errorf("%q is not a time: use a date (2026-11-23) or RFC 3339 (2026-11-23T15:04:05Z)", v)
}
