package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Schedule is a recurring export added at run time (from chat or the
// API); schedules from the config file are not stored.
type Schedule struct {
	Name      string
	Cron      string
	Request   string // JSON of the export request each run makes
	Keep      int
	MaxAge    time.Duration
	CreatedBy string
	CreatedAt time.Time
}

// ErrExists: a row with that key is already there.
var ErrExists = errors.New("already exists")

// AddSchedule stores a new schedule; a name in use gives ErrExists.
func (s *Store) AddSchedule(ctx context.Context, sc Schedule) error {
	if sc.CreatedAt.IsZero() {
		sc.CreatedAt = s.now()
	}
	var n int
	if err := s.DB.QueryRowContext(ctx, s.q(`SELECT count(*) FROM ferry_schedules WHERE name = ?`), sc.Name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("schedule %q: %w", sc.Name, ErrExists)
	}
	_, err := s.DB.ExecContext(ctx, s.q(`INSERT INTO ferry_schedules (name, cron, request, keep, max_age_ms, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		sc.Name, sc.Cron, sc.Request, sc.Keep, sc.MaxAge.Milliseconds(), sc.CreatedBy, sc.CreatedAt.UnixMilli())
	return err
}

// DeleteSchedule removes a stored schedule (ErrNotFound if there is none).
func (s *Store) DeleteSchedule(ctx context.Context, name string) error {
	res, err := s.DB.ExecContext(ctx, s.q(`DELETE FROM ferry_schedules WHERE name = ?`), name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("schedule %q: %w", name, ErrNotFound)
	}
	return nil
}

// Schedules lists the stored schedules by name.
func (s *Store) Schedules(ctx context.Context) ([]Schedule, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT name, cron, request, keep, max_age_ms, created_by, created_at FROM ferry_schedules ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Schedule
	for rows.Next() {
		var sc Schedule
		var maxAge, created int64
		if err := rows.Scan(&sc.Name, &sc.Cron, &sc.Request, &sc.Keep, &maxAge, &sc.CreatedBy, &created); err != nil {
			return nil, err
		}
		sc.MaxAge, sc.CreatedAt = time.Duration(maxAge)*time.Millisecond, time.UnixMilli(created)
		out = append(out, sc)
	}
	return out, rows.Err()
}
