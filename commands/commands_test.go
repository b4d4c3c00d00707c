package commands_test

import (
	"context"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/commands"
)

type partialOptions struct {
	rooms, since, media string
}

type scheduleOptions struct {
	keep int
}

// registry declares commands the way the bot does: one value each.
func registry() *commands.Registry {
	var r commands.Registry
	r.Add(&commands.Command{Path: []string{"export", "full"}, Summary: "export the whole server", Admin: true},
		&commands.Command{Path: []string{"export", "partial"}, Usage: "[--rooms !a:x,!b:x] [--since DATE] [--media none|referenced|all]",
			Summary: "export some rooms or users", Admin: true,
			Flags: func(fs *flag.FlagSet) any {
				o := &partialOptions{}
				fs.StringVar(&o.rooms, "rooms", "", "")
				fs.StringVar(&o.since, "since", "", "")
				fs.StringVar(&o.media, "media", "referenced", "")
				return o
			},
			Check: func(inv *commands.Invocation) error {
				if m := inv.Options.(*partialOptions).media; m != "none" && m != "referenced" && m != "all" {
					return errors.New("--media is none, referenced or all")
				}
				return nil
			}},
		&commands.Command{Path: []string{"export", "status"}, Usage: "[id]", MaxArgs: 1, Summary: "progress of exports", Admin: true},
		&commands.Command{Path: []string{"schedule", "add"}, Usage: `"<cron>" full|partial [--keep N]`, MinArgs: 2, MaxArgs: 2,
			Summary: "add a scheduled export", Admin: true,
			Flags: func(fs *flag.FlagSet) any { o := &scheduleOptions{}; fs.IntVar(&o.keep, "keep", 0, ""); return o }},
		&commands.Command{Path: []string{"mydata"}, Summary: "export your own data", MaxArgs: 0,
			Run: func(context.Context, *commands.Invocation) (string, error) { return "ok", nil }},
		&commands.Command{Path: []string{"help"}, Summary: "this list", MaxArgs: 0})
	return &r
}

func TestParseCommands(t *testing.T) {
	r := registry()
	inv, err := r.Parse(`!export partial --rooms '!a:x,!b:x' --since 2026-01-01 --media none`)
	if err != nil {
		t.Fatal(err)
	}
	if o := inv.Options.(*partialOptions); inv.Command.Name() != "!export partial" || o.rooms != "!a:x,!b:x" || o.since != "2026-01-01" || o.media != "none" {
		t.Errorf("parsed %s %+v", inv.Command.Name(), o)
	}
	// A quoted cron expression is one argument; options may come after it.
	inv, err = r.Parse(`!schedule add "0 3 * * *" full --keep 7`)
	if err != nil {
		t.Fatal(err)
	}
	if o := inv.Options.(*scheduleOptions); len(inv.Args) != 2 || inv.Args[0] != "0 3 * * *" || inv.Args[1] != "full" || o.keep != 7 {
		t.Errorf("schedule add: %q %+v", inv.Args, o)
	}
	if inv, err = r.Parse("!EXPORT Status 42"); err != nil || inv.Args[0] != "42" {
		t.Errorf("case-insensitive command words: %v %v", inv, err)
	}
	if _, err := r.Parse("hello there"); !errors.Is(err, commands.ErrNotCommand) {
		t.Errorf("a plain message: %v", err)
	}
}

// Every bad input gets a message that says what is wrong and how to type it.
func TestUsageErrors(t *testing.T) {
	r := registry()
	for in, want := range map[string][]string{
		"!frobnicate":                       {"unknown command !frobnicate", "!help"},
		"!export everything":                {"!export everything needs one of", "!export full", "!export partial"},
		"!export partial --roomz !a:x":      {"-roomz", "Usage: !export partial [--rooms"},
		"!export partial --media sometimes": {"--media is none, referenced or all"},
		`!schedule add "0 3 * * *"`:         {"missing arguments", `Usage: !schedule add "<cron>"`},
		"!schedule add x full --keep many":  {"invalid value", "-keep"},
		"!export status 1 2":                {`unexpected "2"`},
		`!schedule add "0 3 * * * full`:     {"unclosed \" quote"},
	} {
		_, err := r.Parse(in)
		var ue *commands.UsageError
		if !errors.As(err, &ue) {
			t.Errorf("%s: %v, want a usage error", in, err)
			continue
		}
		for _, w := range want {
			if !strings.Contains(ue.Message, w) {
				t.Errorf("%s: %q lacks %q", in, ue.Message, w)
			}
		}
	}
}

func TestHelpIsGeneratedFromTheCommands(t *testing.T) {
	r := registry()
	admin, user := r.Help(true), r.Help(false)
	for _, c := range r.Commands() {
		if !strings.Contains(admin, c.UsageLine()+" — "+c.Summary) {
			t.Errorf("admin help lacks %s", c.Name())
		}
		if shown := strings.Contains(user, c.UsageLine()+" — "); shown == c.Admin {
			t.Errorf("user help shows %s: %v, but it is an admin command: %v", c.Name(), shown, c.Admin)
		}
	}
	if strings.Contains(user, "!export") || !strings.Contains(user, "!mydata") {
		t.Errorf("user help:\n%s", user)
	}
}

func TestSplit(t *testing.T) {
	for in, want := range map[string][]string{
		`a "b c" 'd e'`:   {"a", "b c", "d e"},
		`a\ b c`:          {"a b", "c"},
		`  spaced   out `: {"spaced", "out"},
		`x=""`:            {"x="},
		`""`:              {""},
	} {
		got, err := commands.Split(in)
		if err != nil || strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
			t.Errorf("Split(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
