package commands_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/commands"
)

// FuzzParse: any message body parses into a declared command with
// arguments in its bounds, or into ErrNotCommand or a *UsageError with a
// message; it never panics.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"!help", "!export full", "!EXPORT Full", "!export partial --rooms !a:x,!b:x --since 2026-01-01 --media all",
		"!export partial --media=none --rooms '!a:x'", `!schedule add "0 3 * * *" full --keep 7`, `!schedule add '@every 6h' partial`,
		"!export status abc", "!mydata", "hello", "", "!", "! ", "!!", "!\"", "!'", `!\`, `!export "unclosed`, "!export \\",
		"!export partial --rooms", "!export partial --media=some", "!export partial -- --rooms x", "!export partial ---rooms=x",
		"!schedule add --keep -1 a b", "!schedule add --keep 99999999999999999999 a b", "!schedule add a b c d",
		"!export\tfull\n", "!\u00a0help", "!\u3000", "!\"\"", "!'' ''", "!export status " + strings.Repeat("x ", 5000),
		"!export partial " + strings.Repeat("--rooms a ", 2000), "!" + strings.Repeat("\\", 1001), "!\xff\xfe", "!export\x00full",
	} {
		f.Add(seed)
	}
	r := registry()
	f.Fuzz(func(t *testing.T, body string) {
		inv, err := r.Parse(body)
		if err != nil {
			var ue *commands.UsageError
			if !errors.Is(err, commands.ErrNotCommand) && !(errors.As(err, &ue) && ue.Message != "") {
				t.Fatalf("Parse(%q): %T %v", body, err, err)
			}
			return
		}
		c := inv.Command
		if c == nil || len(inv.Args) < c.MinArgs || c.MaxArgs >= 0 && len(inv.Args) > c.MaxArgs {
			t.Fatalf("Parse(%q): %+v", body, inv)
		}
	})
}

// FuzzSplit: Split never panics, and the words it returns come back from
// Split when each is written quoted.
func FuzzSplit(f *testing.F) {
	for _, seed := range []string{`a b`, `"a b" c`, `'a "b"' c`, `a\ b`, `"\""`, `''`, `a\`, `"unclosed`, "\t\n", "\xff", `\'`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := commands.Split(s)
		if err != nil {
			return
		}
		var quoted []string
		for _, w := range words {
			var b strings.Builder
			b.WriteByte('"')
			for _, r := range w {
				if r == '"' || r == '\\' {
					b.WriteByte('\\')
				}
				b.WriteRune(r)
			}
			b.WriteByte('"')
			quoted = append(quoted, b.String())
		}
		again, err := commands.Split(strings.Join(quoted, " "))
		if err != nil || len(again) != len(words) {
			t.Fatalf("Split(%q) = %q; quoted back: %q %v", s, words, again, err)
		}
		for i := range words {
			if again[i] != words[i] {
				t.Fatalf("Split(%q) = %q; quoted back: %q", s, words, again)
			}
		}
	})
}
