package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// commandPaths lists every command of the tree (the root too) as the
// words that run it.
func commandPaths(c *cobra.Command, prefix []string) [][]string {
	paths := [][]string{prefix}
	for _, sub := range c.Commands() {
		paths = append(paths, commandPaths(sub, append(append([]string{}, prefix...), sub.Name()))...)
	}
	return paths
}

// Every command's --help exits 0 and prints its description, usage,
// examples and a description of every flag: golden in testdata/help
// (-update rewrites them after a deliberate change).
func TestHelp(t *testing.T) {
	root := newRootCmd()
	root.InitDefaultHelpCmd()
	for _, path := range commandPaths(root, nil) {
		name := strings.Join(append([]string{"bot"}, path...), "_")
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			if err := execute(context.Background(), append(path, "--help"), &out, &out); err != nil {
				t.Fatalf("--help: %v", err)
			}
			golden(t, "help/"+name, out.String())
			cmd, _, err := newRootCmd().Find(path)
			if err != nil {
				t.Fatal(err)
			}
			if cmd.DisableFlagParsing {
				return // import, migrate and serve print their own usage until they move to cobra flags
			}
			if cmd.Example == "" || !strings.Contains(out.String(), "Examples:") {
				t.Error("no example")
			}
			cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
				if len(f.Usage) < 10 {
					t.Errorf("--%s has no description", f.Name)
				}
			})
		})
	}
}

// Shell completion: the scripts for bash, zsh and fish, and the values
// they complete (the commands, --source, --media).
func TestCompletion(t *testing.T) {
	ctx := context.Background()
	for shell, want := range map[string]string{"bash": "__start_bot", "zsh": "#compdef bot", "fish": "complete -c bot"} {
		var out bytes.Buffer
		if err := execute(ctx, []string{"completion", shell}, &out, &out); err != nil || !strings.Contains(out.String(), want) {
			t.Errorf("completion %s: %v, %d bytes without %q", shell, err, out.Len(), want)
		}
	}
	if err := execute(ctx, []string{"completion", "tcsh"}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "bash, zsh or fish") {
		t.Errorf("completion tcsh: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"export", "--source", ""}, []string{"synapse", "dendrite"}},
		{[]string{"export", "--media", ""}, []string{"all", "referenced", "none"}},
		{[]string{"archive", "ve"}, []string{"verify"}},
		{[]string{""}, []string{"archive", "export", "import", "migrate"}},
	} {
		var out bytes.Buffer
		if err := execute(ctx, append([]string{cobra.ShellCompRequestCmd}, tc.args...), &out, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("completing %q: %q lacks %s", tc.args, out.String(), w)
			}
		}
	}
}
