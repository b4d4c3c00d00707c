package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
)

// ErrInstanceRunning: another process holds the instance lock (LockInstance).
var ErrInstanceRunning = errors.New("another Ferry instance is running")

// runningError is LockInstance's refusal, which says who holds the lock
// and what to do.
type runningError string

func (e runningError) Error() string      { return string(e) }
func (runningError) Is(target error) bool { return target == ErrInstanceRunning }

// instanceLockClass is the first key of the PostgreSQL advisory locks on
// instance names (pg_try_advisory_lock(class, hashtext(name))); the
// two-key space is apart from upgradeLock's.
const instanceLockClass = 0x46727279 // "Frry"

// LockInstance takes the exclusive lock of the instance named name (its
// River client ID) on this state database, and holds it until unlock is
// called or the process ends: a second process of the same instance must
// not start, since starting resumes the jobs its name was running (they
// would be the live process's). On PostgreSQL it is a session advisory
// lock on a dedicated connection (not one of the pool's); on SQLite,
// whose database serves one instance whatever its name, an flock on the
// file beside the database (ferry.db.lock), which names the holder's pid.
// The error of a lock held elsewhere wraps ErrInstanceRunning and says
// what to do. A database in memory has no lock (no other process sees it).
func (s *Store) LockInstance(ctx context.Context, name string) (unlock func(), err error) {
	switch {
	case s.Dialect == Postgres:
		return s.lockInstancePostgres(ctx, name)
	case s.path != "":
		return lockInstanceFile(s.path+".lock", name)
	}
	return func() {}, nil
}

func (s *Store) lockInstancePostgres(ctx context.Context, name string) (func(), error) {
	cfg := s.Pool.Config().ConnConfig.Copy()
	host, _ := os.Hostname()
	cfg.RuntimeParams["application_name"] = fmt.Sprintf("ferry pid %d on %s", os.Getpid(), host)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("state database: connect to lock instance %s: %w", name, err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, int32(instanceLockClass), name).Scan(&ok); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("state database: lock instance %s: %w", name, err)
	}
	if !ok {
		// Who holds it, for the message: best effort.
		var holder string
		conn.QueryRow(ctx, `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = $1::bigint::oid
			AND l.objid = (hashtext($2)::bigint & 4294967295)::oid`, int64(instanceLockClass), name).Scan(&holder)
		conn.Close(context.WithoutCancel(ctx))
		if holder != "" {
			holder = " (" + holder + ")"
		}
		return nil, runningError(fmt.Sprintf("another Ferry instance named %s is running%s on this state database: stop it, or give this one another state.instance",
			name, holder))
	}
	return func() { conn.Close(context.Background()) }, nil
}

func lockInstanceFile(path, name string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state database lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := strings.TrimSpace(string(holder))
			if who != "" {
				who = " (" + who + ")"
			}
			return nil, runningError(fmt.Sprintf("another Ferry instance is running%s on this state database (%s), which serves one instance: stop it, or give this one its own state.database",
				who, strings.TrimSuffix(path, ".lock")))
		}
		return nil, fmt.Errorf("state database lock file %s: %w", path, err)
	}
	host, _ := os.Hostname()
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "pid %d on %s, instance %s\n", os.Getpid(), host, name)
	}
	return func() { f.Close() }, nil
}
