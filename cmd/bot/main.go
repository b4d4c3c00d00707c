// Command bot is Ferry's CLI: export, import and migrate homeservers, the
// archive tools, and the Matrix bot with its job service.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = newLogger(os.Stderr).WithContext(ctx)
	if path := os.Getenv("FERRY_CPUPROFILE"); path != "" { // for scripts/bench-export investigations
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if path := os.Getenv("FERRY_MEMPROFILE"); path != "" { // the allocations, written at exit
		defer writeAllocs(path)
	}
	if err := run(ctx, os.Args[1:]); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bot:", err)
		os.Exit(1)
	}
}

// writeAllocs writes the allocation profile to path (FERRY_MEMPROFILE, for
// scripts/bench-import investigations); a failure to write it is ignored.
func writeAllocs(path string) {
	if f, err := os.Create(path); err == nil {
		pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
	}
}

// newLogger is the process's one logger, reached through the context
// (zerolog.Ctx) by everything below main: lines for people on a
// terminal, JSON lines otherwise (a service's log). bot run replaces it
// with its --debug and --log choice.
func newLogger(w *os.File) zerolog.Logger {
	var out io.Writer = w
	if st, err := w.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05"}
	}
	return zerolog.New(out).Level(zerolog.InfoLevel).With().Timestamp().Logger()
}

// run runs one command line (without the program's name), printing on
// the process's stdout and stderr.
func run(ctx context.Context, args []string) error {
	return execute(ctx, args, os.Stdout, os.Stderr)
}

// execute runs one command line with the given outputs.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCmd()
	if len(args) > 0 && args[0] == "-g" { // the mautrix bridges' short form, kept
		args = append([]string{"generate-registration"}, args[1:]...)
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

// newRootCmd is the command tree: every command, registered here once.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "bot",
		Short: "Ferry: a Matrix homeserver's data out, safely, and back in, anywhere",
		Long: `Ferry exports a Matrix homeserver (Synapse or Dendrite) into a versioned, streaming, encrypted
archive, verifies and inspects archives, restores them into a stopped Synapse or Dendrite (a whole
server, or one deleted room into Synapse), migrates between the two in one step, and runs the export,
import and verify jobs with an HTTP API and a Matrix bot.

ARCHIVE, wherever a command takes one, is a directory (the stored form: part-00000000, ...,
key.age), a packed single file (FILE.ferry, its key file FILE.ferry.key.age beside it), or a
bucket URL (s3://bucket/prefix?endpoint=...&use_path_style=true&region=..., file:///path).`,
		Example: `  bot export --source synapse --db postgres://ferry_reader@db/synapse --signing-key /etc/synapse/example.org.signing.key \
    --recipient age1... --to backup.ferry
  bot archive verify --identity id.txt backup.ferry
  bot completion bash > /etc/bash_completion.d/bot`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.ArbitraryArgs, // groupRunE explains an unknown command
		RunE:          groupRunE,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetHelpCommand(newHelpCmd())
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (%s --help shows the options)", err, cmd.CommandPath())
	})
	root.AddCommand(newDemoCmd(), newExportCmd(), newImportCmd(), newMigrateCmd(), newRunCmd(), newServeCmd(),
		newGenerateRegistrationCmd(), newArchiveCmd(), newCompletionCmd())
	return root
}

// commandList names the subcommands of cmd, for a message that says what
// to type instead.
func commandList(cmd *cobra.Command) string {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() && c.Name() != "help" {
			names = append(names, c.Name())
		}
	}
	return fmt.Sprintf("%s takes one of the commands %s (%s --help describes them)", cmd.CommandPath(), strings.Join(names, ", "), cmd.CommandPath())
}

// groupRunE is the RunE of a command that only groups others: it names
// them, and refuses an unknown one.
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		cmd.SuggestionsMinimumDistance = 2
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			return fmt.Errorf("unknown command %q (did you mean %s?): %s", args[0], strings.Join(s, " or "), commandList(cmd))
		}
		return fmt.Errorf("unknown command %q: %s", args[0], commandList(cmd))
	}
	return fmt.Errorf("no command given: %s", commandList(cmd))
}

// takes checks a command's positional arguments: n of them, named in
// names for the message.
func takes(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s takes %s, and was given %d arguments (%s --help shows the usage)", cmd.CommandPath(), names, len(args), cmd.CommandPath())
		}
		return nil
	}
}

// newHelpCmd is cobra's help command with an example.
func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "help [command]",
		Short:   "Help about any command",
		Long:    "Help prints the description, flags and examples of any command (as COMMAND --help does).",
		Example: "  bot help archive verify",
		Args:    cobra.ArbitraryArgs,
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			cmd, _, err := c.Root().Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []string
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					names = append(names, sub.Name()+"\t"+sub.Short)
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return fmt.Errorf("no help for %q: %s", strings.Join(args, " "), commandList(c.Root()))
			}
			cmd.InitDefaultHelpFlag()
			return cmd.Help()
		},
	}
}

// newCompletionCmd prints the shell completion scripts.
func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print the shell completion script for bash, zsh or fish",
		Long: `Completion prints a script that completes bot's commands, flags and their values (--source,
--media, --target) in bash, zsh or fish. Load it in the current shell, or install it once.`,
		Example: `  source <(bot completion bash)                       # this bash session
  bot completion bash > /etc/bash_completion.d/bot     # every bash session (bash-completion)
  bot completion zsh > "${fpath[1]}/_bot"              # zsh (compinit)
  bot completion fish > ~/.config/fish/completions/bot.fish`,
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || (args[0] != "bash" && args[0] != "zsh" && args[0] != "fish") {
				return fmt.Errorf("%s takes one shell: bash, zsh or fish", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			}
			return root.GenFishCompletion(out, true)
		},
	}
}

// noFiles completes a flag's value from a fixed list.
func noFiles(values ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}
