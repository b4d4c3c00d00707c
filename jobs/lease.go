package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/ferry-matrix/ferry/store"
)

// lease is this instance's hold on one job row while it works it.
type lease struct {
	ctx   context.Context // cancelled with store.ErrLeaseLost when the lease is taken over
	token int64           // the fencing token
	stop  context.CancelCauseFunc
}

// acquireLease takes the job's lease and heart-beats it every third of
// its TTL until release. store.ErrLeaseHeld means a live worker elsewhere
// has it.
func (s *Service) acquireLease(ctx context.Context, id string) (*lease, error) {
	ttl := s.leaseTTL()
	token, err := s.Store.AcquireLease(ctx, id, s.Owner, ttl)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancelCause(ctx)
	go func() {
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
				err := s.Store.Heartbeat(lctx, id, token, ttl)
				switch {
				case errors.Is(err, store.ErrLeaseLost):
					cancel(store.ErrLeaseLost)
					return
				case err != nil && lctx.Err() == nil:
					// tried again at the next beat; the lease lasts three
					zerolog.Ctx(ctx).Warn().Err(err).Msg("lease heartbeat failed")
				}
			}
		}
	}()
	return &lease{ctx: lctx, token: token, stop: cancel}, nil
}

// release stops the heartbeat and gives the lease up. A lease that cannot
// be given up expires by itself (logged).
func (l *lease) release(ctx context.Context, s *Service, id string) {
	l.stop(nil)
	if err := s.Store.ReleaseLease(context.WithoutCancel(ctx), id, l.token); err != nil && !errors.Is(err, store.ErrLeaseLost) {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("the lease could not be released; it expires by itself")
	}
}

// lost reports whether the run ended because another worker took over.
func (l *lease) lost(err error) bool {
	return errors.Is(context.Cause(l.ctx), store.ErrLeaseLost) || errors.Is(err, store.ErrLeaseLost)
}
