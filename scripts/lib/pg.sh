# Shared by the benchmark scripts: a private PostgreSQL cluster in $work
# (initdb + pg_ctl on a free loopback port, as the postgres user under
# root), torn down on exit, and a timer. Source after setting $work.
bindir=$(dirname "$(readlink -f "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")")
asuser=()
if [ "$(id -u)" = 0 ]; then asuser=(runuser -u postgres --); chown postgres "$work"; fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# FERRY_BENCH_HUGEPAGES=1 (root only) backs shared_buffers with huge pages,
# as production servers with a large shared_buffers usually are: without
# them, every new connection pays a page fault for each buffer it first
# touches (about 15 us a buffer on this VM), which dominates index-driven
# reads such as a one-room export. The reservation is given back on exit.
# FERRY_BENCH_SHARED_BUFFERS (default 1GB) sizes shared_buffers: each
# backend faults in every buffer page it first touches, so a smaller pool
# shows what those faults cost a load.
pg_hugepages=""
hugepages_before=""
if [ "${FERRY_BENCH_HUGEPAGES:-}" = 1 ]; then
  hugepages_before=$(cat /proc/sys/vm/nr_hugepages)
  echo $((hugepages_before + 600)) > /proc/sys/vm/nr_hugepages
  pg_hugepages="-c huge_pages=on"
fi
pg_cleanup() {
  "${asuser[@]}" "$bindir/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
  if [ -n "$hugepages_before" ]; then echo "$hugepages_before" > /proc/sys/vm/nr_hugepages; fi
}
"${asuser[@]}" "$bindir/initdb" -D "$work/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
"${asuser[@]}" "$bindir/pg_ctl" -D "$work/data" -l "$work/pg.log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$work -c fsync=off -c shared_buffers=${FERRY_BENCH_SHARED_BUFFERS:-1GB} $pg_hugepages" start >/dev/null
pg="-h 127.0.0.1 -p $port -U postgres"
url() { echo "postgres://postgres@127.0.0.1:$port/$1?sslmode=disable"; }

# timed CMD...: runs CMD, prints "seconds peak_rss_kb".
timed() {
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; return 1; }
  cat "$work/time"
}

# The Synapse fixture, and the fixture inflated by ferry-benchgen (needs
# $work/benchgen built and $cache set; dumps of large ones are cached).
restore_fixture() {
  createdb $pg -E UTF8 --lc-collate=C --lc-ctype=C -T template0 "$1"
  zcat testdata/synapse-1.67/synapse.sql.gz | grep -v '^\\\(un\)\?restrict ' | psql $pg -q -v ON_ERROR_STOP=1 "$1" >/dev/null
}

# make_db NAME EVENTS: the fixture inflated by EVENTS events (cached when large).
make_db() {
  local name=$1 n=$2 dump="$cache/synapse-$2.dump"
  if [ -f "$dump" ]; then
    createdb $pg -E UTF8 --lc-collate=C --lc-ctype=C -T template0 "$name"
    pg_restore $pg -j 2 -d "$name" "$dump"
  else
    echo "building the $n-event database (once; cached in $dump)" >&2
    restore_fixture "$name"
    "$work/benchgen" -db "$(url "$name")" -signing-key testdata/synapse-1.67/fixture.test.signing.key -events "$n" -users $((n / 500 + 100)) >&2
    if [ "$n" -ge 100000 ]; then pg_dump $pg -Fc -f "$dump.tmp" "$name" && mv "$dump.tmp" "$dump"; fi
  fi
  psql $pg -q -c "VACUUM ANALYZE" "$name"
}
