package commands

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/storage"
)

// scheduleOptions are the options of !schedule add.
type scheduleOptions struct {
	exportOptions
	keep   int
	maxAge string
	age    time.Duration
}

// cmdScheduleAdd: !schedule add "<cron>" full|partial [options].
func (h *Handlers) cmdScheduleAdd() *Command {
	return &Command{Path: []string{"schedule", "add"}, Admin: true, MinArgs: 2, MaxArgs: 2,
		Usage:   `"<cron>" full|partial [--rooms ...] [--users ...] [--media ...] [--keep N] [--max-age 30d] [--name NAME]`,
		Summary: "a recurring export (cron: \"0 3 * * *\", @daily, @every 6h), announced here, encrypted to your key, with retention",
		Flags: func(fs *flag.FlagSet) any {
			o := &scheduleOptions{}
			fs.Var(&o.rooms, "rooms", "room IDs (partial)")
			fs.Var(&o.users, "users", "user IDs (partial)")
			fs.StringVar(&o.media, "media", "", "none, referenced or all")
			fs.StringVar(&o.name, "name", "", "schedule name (archives are named NAME-<time>)")
			fs.IntVar(&o.keep, "keep", 0, "keep the newest N archives")
			fs.StringVar(&o.maxAge, "max-age", "", "delete archives older than this (30d, 12h)")
			return o
		},
		Check: func(inv *Invocation) error {
			o := inv.Options.(*scheduleOptions)
			if _, err := cron.ParseStandard(inv.Args[0]); err != nil {
				return fmt.Errorf("%q is not a schedule (%v): use five cron fields in quotes (\"0 3 * * *\") or @daily, @every 6h", inv.Args[0], err)
			}
			o.sel = exporter.Selection{Type: inv.Args[1], Rooms: o.rooms, Users: o.users, Media: o.media}
			if err := o.sel.Validate(); err != nil {
				return err
			}
			if o.keep < 0 {
				return errors.New("--keep must not be negative")
			}
			if o.maxAge != "" {
				d, err := parseAge(o.maxAge)
				if err != nil {
					return err
				}
				o.age = d
			}
			if o.name != "" {
				if err := storage.CheckName(o.name); err != nil {
					return fmt.Errorf("--name: %w", err)
				}
			}
			return nil
		},
		Run: func(ctx context.Context, inv *Invocation) (string, error) {
			o := inv.Options.(*scheduleOptions)
			recips, err := h.recipientsFor(inv.Sender)
			if err != nil {
				return "", err
			}
			name := o.name
			if name == "" {
				name = "schedule-" + JobID(inv.EventID)[:6]
			}
			sch, err := h.Svc.AddSchedule(ctx, app.ScheduleRequest{Name: name, Cron: inv.Args[0], Selection: o.sel, Recipients: recips,
				Keep: o.keep, MaxAge: o.age, By: actor(inv)})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("Schedule `%s` added: %s export, cron `%s`%s. I'll announce each run here; `!schedule remove %s` stops it.",
				name, inv.Args[1], sch.Cron, retention(sch), name), nil
		}}
}

// parseAge reads a Go duration or a number of days ("30d").
func parseAge(v string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("--max-age %q: use days (30d) or hours (12h)", v)
}

// retention describes a schedule's retention for a reply.
func retention(s app.Schedule) string {
	var parts []string
	if s.Keep > 0 {
		parts = append(parts, fmt.Sprintf("keeping the newest %d", s.Keep))
	}
	if s.MaxAge > 0 {
		parts = append(parts, "deleting archives older than "+s.MaxAge.String())
	}
	if len(parts) == 0 {
		return ", keeping every archive"
	}
	return ", " + strings.Join(parts, " and ")
}

// cmdScheduleRemove: !schedule remove <name>.
func (h *Handlers) cmdScheduleRemove() *Command {
	return &Command{Path: []string{"schedule", "remove"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "NAME",
		Summary: "stop a schedule added here (its archives stay)",
		Run: func(ctx context.Context, inv *Invocation) (string, error) {
			if err := h.Svc.RemoveSchedule(ctx, inv.Args[0], actor(inv)); err != nil {
				return "", err
			}
			return fmt.Sprintf("Schedule `%s` removed; its archives stay until you delete them.", inv.Args[0]), nil
		}}
}

// cmdScheduleList: !schedule list.
func (h *Handlers) cmdScheduleList() *Command {
	return &Command{Path: []string{"schedule", "list"}, Admin: true, MaxArgs: 0,
		Summary: "the scheduled backups and their retention",
		Run: func(ctx context.Context, inv *Invocation) (string, error) {
			list, err := h.Svc.Schedules(ctx)
			if err != nil {
				return "", err
			}
			if len(list) == 0 {
				return "No scheduled backups. They are configured under `schedules:` in Ferry's config.", nil
			}
			var sb strings.Builder
			sb.WriteString("Scheduled backups:")
			for _, s := range list {
				origin := "from the config file"
				if s.CreatedBy != "" {
					origin = "added by " + s.CreatedBy
				}
				fmt.Fprintf(&sb, "\n`%s` cron `%s`%s, %s", s.Name, s.Cron, retention(s.Schedule), origin)
				if t := s.LastSuccess; !t.IsZero() {
					fmt.Fprintf(&sb, ", last success %s", t.UTC().Format("2006-01-02 15:04 UTC"))
				} else {
					sb.WriteString(", no successful run yet")
				}
			}
			return sb.String(), nil
		}}
}
