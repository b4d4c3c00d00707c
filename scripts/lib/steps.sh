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
  step "fuzz $2" go test -run '^$' -fuzz "^${2}\$" -fuzztime "${FERRY_FUZZTIME:-10s}" -fuzzminimizetime 2s "$1"
}

# steps_finish: exit 1 naming the failed steps, or say that all passed.
steps_finish() {
  if [ ${#failed_steps[@]} -gt 0 ]; then
    echo "FAILED steps: ${failed_steps[*]}"
    exit 1
  fi
  echo "all steps passed"
}
