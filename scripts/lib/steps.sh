# Step runner for scripts/test: every step runs even when an earlier one
# fails (a failing test must not silently skip the fuzz runs), and
# steps_finish fails at the end, naming each step that failed.
failed_steps=()

# step NAME COMMAND...: runs COMMAND, remembers NAME if it fails.
step() {
  local name="$1"; shift
  echo "=== step: $name"
  if ! "$@"; then
    echo "=== step failed: $name"
    failed_steps+=("$name")
  fi
}

# fuzz PACKAGE TARGET: a bounded fuzz run of one target (FERRY_FUZZTIME each).
fuzz() {
  step "fuzz $2" fuzz_once "$1" "$2"
}

# fuzz_once runs the fuzzer; when it fails only because its time ran out
# while it was still minimising a new input ("context deadline exceeded",
# no failing input written: Go's fuzzer does that on a loaded machine), it
# runs once more. A crash always writes its failing input and fails.
fuzz_once() {
  local out
  for try in 1 2; do
    out=$(go test -run '^$' -fuzz "^${2}\$" -fuzztime "${FERRY_FUZZTIME:-10s}" -fuzzminimizetime 2s "$1" 2>&1) && { echo "$out"; return 0; }
    echo "$out"
    if ! grep -q 'context deadline exceeded' <<<"$out" || grep -q 'Failing input written' <<<"$out"; then
      return 1
    fi
    echo "(the fuzzer ran out of time minimising an input, no failing input: once more)"
  done
  return 1
}

# steps_finish: exit 1 naming the failed steps, or say that all passed.
steps_finish() {
  if [ ${#failed_steps[@]} -gt 0 ]; then
    echo "FAILED steps: ${failed_steps[*]}"
    exit 1
  fi
  echo "all steps passed"
}
