#!/usr/bin/env bash
# Shared by the bats tests: a real S3 server per test file, and hooks run the way
# buildkite-agent runs them (sourced by a bash wrapper, in the job's checkout, plugin config in
# BUILDKITE_PLUGIN_S3_CACHE_* variables, a buildkite-agent stub on PATH).

bats_load_library bats-support
bats_load_library bats-assert
bats_load_library bats-file

PLUGIN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PLUGIN_DIR

# Builds the hook binaries and s3tool once per file and starts a server of $S3_KIND (versitygw).
start_server() {
  local kind="${S3_KIND:-versitygw}"
  export BIN="$BATS_FILE_TMPDIR/bin"
  mkdir -p "$BIN"
  (cd "$PLUGIN_DIR" && CGO_ENABLED=0 go build -o "$BIN/" ./cmd/pre-command ./cmd/post-command ./tests/s3tool)
  "$BIN/s3tool" serve -kind "$kind" -dir "$BATS_FILE_TMPDIR/server" -bucket s3-cache-test \
    -env-file "$BATS_FILE_TMPDIR/server.env" >"$BATS_FILE_TMPDIR/s3tool.log" 2>&1 &
  echo $! >"$BATS_FILE_TMPDIR/server.pid"
  local i
  for ((i = 0; i < 300; i++)); do
    [[ -f "$BATS_FILE_TMPDIR/server.env" ]] && return 0
    if ! kill -0 "$(cat "$BATS_FILE_TMPDIR/server.pid")" 2>/dev/null; then
      cat "$BATS_FILE_TMPDIR/s3tool.log" >&3
      echo "the $kind test server did not start (see above); build it with scripts/build-tools" >&3
      return 1
    fi
    sleep 0.1
  done
  echo "the $kind test server did not start within 30s" >&3
  return 1
}

stop_server() {
  if [[ -f "$BATS_FILE_TMPDIR/server.pid" ]]; then
    kill "$(cat "$BATS_FILE_TMPDIR/server.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
  fi
}

# A fresh job: its own checkout, job ID and plugin configuration, pointing at the server.
new_job() {
  local name="${1:-job}"
  local v
  for v in "${!BUILDKITE_PLUGIN_S3_CACHE_@}"; do unset "$v"; done
  set -a
  # shellcheck disable=SC1091
  . "$BATS_FILE_TMPDIR/server.env"
  set +a
  export S3_CACHE_BIN_DIR="$BIN"
  export BUILDKITE_JOB_ID="$name-$BATS_TEST_NUMBER-$RANDOM$RANDOM"
  export BUILDKITE_ORGANIZATION_SLUG=acme BUILDKITE_PIPELINE_SLUG=web BUILDKITE_BRANCH=main
  export BUILDKITE_PIPELINE_DEFAULT_BRANCH=main
  export BUILDKITE_LABEL=":npm: install" BUILDKITE_COMMAND_EXIT_STATUS=0
  # Each test has its own prefix, so tests never see each other's objects.
  export BUILDKITE_PLUGIN_S3_CACHE_PREFIX="t$BATS_TEST_NUMBER"
  export CHECKOUT="$BATS_TEST_TMPDIR/$name"
  mkdir -p "$CHECKOUT" "$BATS_TEST_TMPDIR/stub"
  cat >"$BATS_TEST_TMPDIR/stub/buildkite-agent" <<'STUB'
#!/usr/bin/env bash
echo "buildkite-agent $*" >>"${BATS_TEST_TMPDIR}/buildkite-agent.calls"
STUB
  chmod +x "$BATS_TEST_TMPDIR/stub/buildkite-agent"
  [[ ":$PATH:" == *":$BATS_TEST_TMPDIR/stub:"* ]] || export PATH="$BATS_TEST_TMPDIR/stub:$PATH"
}

# run_hook HOOK: source hooks/HOOK in a bash wrapper from the checkout, as the agent does, and
# keep the environment it leaves behind for `exported`.
run_hook() {
  local hook="$1"
  run bash -c 'cd "$1" && . "$2"; status=$?; export -p >"$3"; exit "$status"' \
    _ "$CHECKOUT" "$PLUGIN_DIR/hooks/$hook" "$BATS_TEST_TMPDIR/exported.env"
}

# exported NAME: the value of NAME after the last run_hook.
exported() {
  (
    # shellcheck disable=SC1091
    . "$BATS_TEST_TMPDIR/exported.env"
    printf '%s' "${!1:-}"
  )
}

# objects [PREFIX]: the objects under the test's prefix, "<key> <size> <etag>" per line, but the
# last-use markers restores write (.s3-cache-used/), which are not caches.
objects() {
  "$BIN/s3tool" ls -endpoint "$S3_CACHE_TEST_ENDPOINT" -bucket s3-cache-test -prefix "${1:-$BUILDKITE_PLUGIN_S3_CACHE_PREFIX/}" |
    awk '$1 !~ /(^|\/)\.s3-cache-used\//'
}

# tree_listing DIR: every entry with its type, mode, symlink target and, for files, mtime and checksum.
tree_listing() {
  (cd "$1" && find . -printf '%p %y %m %l\n' | sort &&
    find . -type f -printf '%p %T@\n' | sort &&
    find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}
