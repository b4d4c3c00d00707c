// Package commands is the bot's chat commands: it parses them ("!export
// partial --rooms !a:x --since 2026-01-01") against declared commands,
// generates !help from the same declarations, and holds the handlers
// (Handlers.List, one file each): each parses its options into the
// application layer's terms (an exporter.Selection, ...), calls one verb
// of Service (app.Service) and formats the reply. What they need of the
// chat side (following a job, confirmations, direct chats) is Chat, which
// the bot implements; the bot authorises before a handler runs.
//
// Words are split like a shell would: double or single quotes keep spaces
// ("0 3 * * *" is one word), a backslash escapes the next character.
// Options use Go's flag syntax (--name value or --name=value) and may come
// before or after the positional arguments.
package commands

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Prefix starts every command.
const Prefix = "!"

// Command is one chat command.
type Command struct {
	// Path is the command's words after the prefix: {"export", "partial"}.
	Path []string
	// Usage shows the arguments after the path: "[--keep N] <cron> full|partial".
	Usage string
	// Summary is one line for !help.
	Summary string
	// Admin commands run only for configured admins in admin rooms.
	Admin bool
	// MinArgs and MaxArgs bound the positional arguments (MaxArgs < 0: no bound).
	MinArgs, MaxArgs int
	// Flags declares the command's options on fs and returns what Run gets
	// as Invocation.Options (usually a pointer to a struct the flags fill).
	Flags func(fs *flag.FlagSet) any
	// Check validates the parsed options and arguments (nil: none). Its
	// error is shown with the usage line.
	Check func(inv *Invocation) error
	// Run does the work and returns the reply.
	Run func(ctx context.Context, inv *Invocation) (string, error)
}

// Name is the command as typed: "!export partial".
func (c *Command) Name() string { return Prefix + strings.Join(c.Path, " ") }

// UsageLine is the name and the usage.
func (c *Command) UsageLine() string {
	if c.Usage == "" {
		return c.Name()
	}
	return c.Name() + " " + c.Usage
}

// Invocation is one parsed use of a command.
type Invocation struct {
	Command *Command
	Args    []string
	Options any
	// Filled by the caller: who sent it, where, in which event, and
	// whether they are an admin in an admin room.
	Sender, RoomID, EventID string
	Admin                   bool
}

// ErrNotCommand: the message is not addressed to the bot.
var ErrNotCommand = errors.New("not a command")

// UsageError is a command the bot recognised but could not run as typed;
// its message says what is wrong and how to type it.
type UsageError struct {
	Message string
}

func (e *UsageError) Error() string { return e.Message }

// Registry holds the commands.
type Registry struct {
	commands []*Command
}

// Add declares a command. Paths must be unique.
func (r *Registry) Add(cmds ...*Command) {
	r.commands = append(r.commands, cmds...)
}

// Commands lists the commands in declaration order.
func (r *Registry) Commands() []*Command { return r.commands }

// Parse reads a message body. It returns ErrNotCommand for messages that
// do not start with the prefix, and a *UsageError for an unknown command or
// bad arguments.
func (r *Registry) Parse(body string) (*Invocation, error) {
	body = strings.TrimSpace(body)
	if !strings.HasPrefix(body, Prefix) || len(body) == len(Prefix) {
		return nil, ErrNotCommand
	}
	words, err := Split(strings.TrimPrefix(body, Prefix))
	if err != nil {
		return nil, &UsageError{Message: err.Error()}
	}
	if len(words) == 0 {
		return nil, ErrNotCommand
	}
	cmd := r.match(words)
	if cmd == nil {
		return nil, r.unknown(words)
	}
	inv := &Invocation{Command: cmd}
	fs := flag.NewFlagSet(cmd.Name(), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if cmd.Flags != nil {
		inv.Options = cmd.Flags(fs)
	}
	rest := words[len(cmd.Path):]
	// Options may follow positional arguments: parse in rounds.
	for {
		if err := fs.Parse(rest); err != nil {
			return nil, usage(cmd, err)
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		inv.Args = append(inv.Args, rest[0])
		rest = rest[1:]
	}
	switch {
	case len(inv.Args) < cmd.MinArgs:
		return nil, usage(cmd, fmt.Errorf("missing arguments"))
	case cmd.MaxArgs >= 0 && len(inv.Args) > cmd.MaxArgs:
		return nil, usage(cmd, fmt.Errorf("unexpected %q", strings.Join(inv.Args[cmd.MaxArgs:], " ")))
	}
	if cmd.Check != nil {
		if err := cmd.Check(inv); err != nil {
			return nil, usage(cmd, err)
		}
	}
	return inv, nil
}

func usage(cmd *Command, err error) *UsageError {
	return &UsageError{Message: fmt.Sprintf("%s: %v. Usage: %s", cmd.Name(), err, cmd.UsageLine())}
}

// match finds the command with the longest path that starts words.
func (r *Registry) match(words []string) *Command {
	var best *Command
	for _, c := range r.commands {
		if len(c.Path) > len(words) || (best != nil && len(c.Path) <= len(best.Path)) {
			continue
		}
		ok := true
		for i, w := range c.Path {
			ok = ok && strings.EqualFold(words[i], w)
		}
		if ok {
			best = c
		}
	}
	return best
}

// unknown explains an unknown command, listing the variants of a known
// first word ("!export foo": full, partial, status, ...).
func (r *Registry) unknown(words []string) *UsageError {
	var variants []string
	for _, c := range r.commands {
		if len(words) > 0 && strings.EqualFold(c.Path[0], words[0]) {
			variants = append(variants, c.UsageLine())
		}
	}
	if len(variants) > 0 {
		return &UsageError{Message: fmt.Sprintf("%s%s needs one of: %s", Prefix, strings.Join(words[:min(2, len(words))], " "), strings.Join(variants, "; "))}
	}
	return &UsageError{Message: fmt.Sprintf("unknown command %s%s; %shelp lists the commands", Prefix, words[0], Prefix)}
}

// Help lists the commands a user may run (admin commands only for admins),
// sorted by name, one line each.
func (r *Registry) Help(admin bool) string {
	var lines []string
	for _, c := range r.commands {
		if c.Admin && !admin {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s — %s", c.UsageLine(), c.Summary))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// Split splits a command line into words, shell-like: quotes keep spaces,
// a backslash escapes the next character.
func Split(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped, inWord = false, true
		case r == '\\':
			escaped = true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed %c quote", quote)
	}
	if escaped { // a backslash at the end stands for itself
		cur.WriteRune('\\')
		inWord = true
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
