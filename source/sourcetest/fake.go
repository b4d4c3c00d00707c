package sourcetest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
)

// Fake is an in-memory source of Users users, resumable, with hooks that
// let tests slow it down or make a run fail: for job, API and exporter
// tests that need no database.
type Fake struct {
	Users int
	// OnUser, if set, runs before each user is emitted.
	OnUser func(i int) error
	// FailRun makes run number FailRun (from 1) fail after 300 users with a
	// transient-looking error.
	FailRun int
	// Caps are the capabilities it declares (Implementation "fake" when
	// unset). Its streams ignore the filter; a filter Caps do not cover is
	// refused with source.ErrUnsupported, as a real source does.
	Caps source.Capabilities

	mu     sync.Mutex
	runs   int
	starts []int
}

// Starts returns where each run started (its resume cursor).
func (f *Fake) Starts() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.starts...)
}

func (f *Fake) Info() source.Info {
	return source.Info{ServerName: "fake.test", Implementation: "fake"}
}
func (f *Fake) Close() error { return nil }

// Capabilities returns Caps.
func (f *Fake) Capabilities() source.Capabilities {
	c := f.Caps
	if c.Implementation == "" {
		c.Implementation = "fake"
	}
	return c
}

func (f *Fake) Streams(_ context.Context, filter source.Filter, _ source.Options) ([]source.Stream, error) {
	if err := f.Capabilities().Check(filter); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.runs++
	run := f.runs
	f.mu.Unlock()
	return []source.Stream{{
		Name:  source.StreamUsers,
		Count: func(context.Context) (int64, error) { return int64(f.Users), nil },
		Run: func(ctx context.Context, cursor []byte, sink source.Sink) error {
			start := 0
			if err := source.DecodeCursor(cursor, &start); err != nil {
				return err
			}
			f.mu.Lock()
			f.starts = append(f.starts, start)
			f.mu.Unlock()
			for i := start; i < f.Users; i++ {
				if err := ctx.Err(); err != nil {
					return err
				}
				if run == f.FailRun && i == 300 {
					return errors.New("connection reset by peer")
				}
				if f.OnUser != nil {
					if err := f.OnUser(i); err != nil {
						return err
					}
				}
				u := &archive.User{UserID: fmt.Sprintf("@u%05d:fake.test", i), DisplayName: fmt.Sprintf("User %d with a name long enough to fill parts", i)}
				if err := sink.Record(archive.SectionUsers, u); err != nil {
					return err
				}
				if err := sink.Checkpoint(source.EncodeCursor(i + 1)); err != nil {
					return err
				}
			}
			return nil
		},
	}}, nil
}

// EstimateSize makes Fake a source.Estimator (about 40 archive bytes a user).
func (f *Fake) EstimateSize(context.Context, source.Filter, source.Options) (int64, error) {
	return int64(f.Users) * 40, nil
}
