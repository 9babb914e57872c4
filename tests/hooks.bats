#!/usr/bin/env bats
# The hooks, run through the shims as buildkite-agent runs them, against a real versitygw.

load helpers

setup_file() { start_server; }
teardown_file() { stop_server; }

# A checkout with a lockfile and a "node_modules" to cache.
make_project() {
  mkdir -p "$CHECKOUT/node_modules/pkg/bin"
  echo '{"lockfileVersion": 3}' >"$CHECKOUT/package-lock.json"
  echo 'module.exports = 1' >"$CHECKOUT/node_modules/pkg/index.js"
  printf '#!/bin/sh\necho hi\n' >"$CHECKOUT/node_modules/pkg/bin/cli"
  chmod 755 "$CHECKOUT/node_modules/pkg/bin/cli"
  mkdir -p "$CHECKOUT/node_modules/.bin"
  ln -s ../pkg/bin/cli "$CHECKOUT/node_modules/.bin/cli"
}

file_level_config() {
  export BUILDKITE_PLUGIN_S3_CACHE_PATH=node_modules
  export BUILDKITE_PLUGIN_S3_CACHE_MANIFEST=package-lock.json
  export BUILDKITE_PLUGIN_S3_CACHE_RESTORE=file
  export BUILDKITE_PLUGIN_S3_CACHE_SAVE=file
}

@test "a job misses and saves; the next job restores an exact hit" {
  new_job first
  make_project
  file_level_config
  run_hook pre-command
  assert_success
  assert_output --partial "--- :s3: Restoring cache (file level)"
  assert_output --partial "Cache miss"
  [ "$(exported BUILDKITE_PLUGIN_S3_CACHE_HIT)" = miss ]

  run_hook post-command
  assert_success
  assert_output --partial "--- :s3: Saving cache (file level)"
  assert_output --regexp "Saved t[0-9]+/acme/web/file/[0-9a-f]{32}/[0-9a-f]{32}\.tar\.zst \([0-9.]+ [KMG]?i?B, [0-9]+ entries\) in .*/s"
  [ "$(objects | wc -l)" -eq 1 ]
  src="$CHECKOUT"

  new_job second
  cp "$src/package-lock.json" "$CHECKOUT/"
  file_level_config
  run_hook pre-command
  assert_success
  assert_output --partial "Cache hit (exact, file level)"
  [ "$(exported BUILDKITE_PLUGIN_S3_CACHE_HIT)" = exact ]
  [ "$(exported BUILDKITE_PLUGIN_S3_CACHE_HIT_LEVEL)" = file ]
  diff <(tree_listing "$src/node_modules") <(tree_listing "$CHECKOUT/node_modules")

  # An exact hit is not saved again.
  run_hook post-command
  assert_success
  assert_output --partial "Restored an exact hit"
  [ "$(objects | wc -l)" -eq 1 ]
}

@test "a changed manifest misses at file level and restores the branch level" {
  new_job first
  make_project
  export BUILDKITE_PLUGIN_S3_CACHE_PATH=node_modules BUILDKITE_PLUGIN_S3_CACHE_MANIFEST=package-lock.json
  export BUILDKITE_PLUGIN_S3_CACHE_RESTORE=branch BUILDKITE_PLUGIN_S3_CACHE_SAVE_0=file BUILDKITE_PLUGIN_S3_CACHE_SAVE_1=branch
  run_hook pre-command
  assert_success
  run_hook post-command
  assert_success
  [ "$(objects | wc -l)" -eq 2 ]
  branch_key=$(objects | awk '{print $1}' | grep /branch/main/)
  src="$CHECKOUT"

  new_job second
  echo '{"lockfileVersion": 3, "changed": true}' >"$CHECKOUT/package-lock.json"
  export BUILDKITE_PLUGIN_S3_CACHE_PATH=node_modules BUILDKITE_PLUGIN_S3_CACHE_MANIFEST=package-lock.json
  export BUILDKITE_PLUGIN_S3_CACHE_RESTORE=branch BUILDKITE_PLUGIN_S3_CACHE_SAVE_0=file BUILDKITE_PLUGIN_S3_CACHE_SAVE_1=branch
  run_hook pre-command
  assert_success
  assert_output --partial "No cache at t${BATS_TEST_NUMBER}/acme/web/file/"
  assert_output --partial "Cache hit (fallback, branch level)"
  [ "$(exported BUILDKITE_PLUGIN_S3_CACHE_HIT)" = fallback ]
  [ "$(exported BUILDKITE_PLUGIN_S3_CACHE_HIT_KEY)" = "$branch_key" ]
  diff <(tree_listing "$src/node_modules") <(tree_listing "$CHECKOUT/node_modules")
}

@test "an unknown key is a configuration error" {
  new_job
  file_level_config
  export BUILDKITE_PLUGIN_S3_CACHE_RESTORE_KEYS=foo
  run_hook pre-command
  assert_failure 1
  assert_output --regexp "s3-cache: invalid configuration: restore-keys: unknown key"
  [ "$(echo "$output" | wc -l)" -eq 1 ]
}

@test "an invalid level is a configuration error" {
  new_job
  file_level_config
  export BUILDKITE_PLUGIN_S3_CACHE_RESTORE=everything
  run_hook pre-command
  assert_failure 1
  assert_output --partial 'restore: invalid level "everything": want one of file, step, branch, pipeline, all'
  [ "$(echo "$output" | wc -l)" -eq 1 ]
}

@test "a missing path is a configuration error" {
  new_job
  file_level_config
  unset BUILDKITE_PLUGIN_S3_CACHE_PATH
  run_hook post-command
  assert_failure 1
  assert_output --partial "path: missing"
  [ "$(echo "$output" | wc -l)" -eq 1 ]
}

@test "a path that holds the checkout is a configuration error in both hooks" {
  new_job
  make_project
  file_level_config
  export BUILDKITE_PLUGIN_S3_CACHE_PATH=.
  local hook
  for hook in pre-command post-command; do
    run_hook "$hook"
    assert_failure 1
    assert_output --partial 's3-cache: invalid configuration: path: "." is or contains the checkout'
    [ "$(echo "$output" | wc -l)" -eq 1 ]
  done
  assert_file_exists "$CHECKOUT/package-lock.json"
  assert_file_exists "$CHECKOUT/node_modules/pkg/index.js"
}

@test "a path over the plugin's own checkout is a configuration error, and its files stay" {
  new_job
  make_project
  file_level_config
  export BUILDKITE_PLUGIN_S3_CACHE_PATH="$PLUGIN_DIR/lib"
  run_hook pre-command
  assert_failure 1
  assert_output --partial "the plugin's own checkout"
  assert_file_exists "$PLUGIN_DIR/lib/shim.bash"
}

@test "a missing bucket is a configuration error" {
  new_job
  file_level_config
  unset BUILDKITE_PLUGIN_S3_CACHE_BUCKET
  run_hook pre-command
  assert_failure 1
  assert_output --partial "bucket: missing"
  [ "$(echo "$output" | wc -l)" -eq 1 ]
}

@test "an unreachable endpoint is a warning by default and a failure with soft-fail false" {
  new_job
  make_project
  file_level_config
  export BUILDKITE_PLUGIN_S3_CACHE_ENDPOINT=http://127.0.0.1:9 # discard: nothing listens
  run_hook pre-command
  assert_success
  assert_output --partial ":warning: s3-cache:"
  [ "$(exported BUILDKITE_PLUGIN_S3_CACHE_HIT)" = miss ]
  run_hook post-command
  assert_success
  assert_output --partial ":warning: s3-cache:"

  export BUILDKITE_PLUGIN_S3_CACHE_SOFT_FAIL=false
  run_hook pre-command
  assert_failure 1
  assert_output --partial "+++ :rotating_light: s3-cache:"
  run_hook post-command
  assert_failure 1
}

@test "the shim reads soft-fail as the binary does" {
  new_job
  make_project
  file_level_config
  export BUILDKITE_PLUGIN_S3_CACHE_ENDPOINT=http://127.0.0.1:9 # discard: nothing listens
  mkdir -p "$BATS_TEST_TMPDIR/no-binaries"
  for value in 1 t T TRUE true True 0 f F FALSE false False "" maybe no; do
    export BUILDKITE_PLUGIN_S3_CACHE_SOFT_FAIL="$value"
    # The binary runs and cannot reach the endpoint...
    run_hook pre-command
    binary="$status"
    if [[ "$output" == *"invalid configuration"* ]]; then binary="$status config"; fi
    # ...and the shim cannot find the binary: each says whether the build goes on.
    S3_CACHE_BIN_DIR="$BATS_TEST_TMPDIR/no-binaries" run_hook pre-command
    assert_output --partial "S3_CACHE_BIN_DIR is set but $BATS_TEST_TMPDIR/no-binaries/pre-command is not an executable file"
    shim="$status"
    if [[ "$output" == *"invalid configuration: soft-fail: invalid value \"$value\": want true or false"* ]]; then shim="$status config"; fi
    [ "$shim" = "$binary" ] || fail "soft-fail '$value': the shim says '$shim', the binary '$binary'"
  done
}

@test "fail-on-cache-miss fails a miss through the binary and the shim, whatever soft-fail says" {
  new_job
  make_project
  file_level_config
  export BUILDKITE_PLUGIN_S3_CACHE_FAIL_ON_CACHE_MISS=true BUILDKITE_PLUGIN_S3_CACHE_SOFT_FAIL=true
  run_hook pre-command
  assert_failure 1
  assert_output --regexp "s3-cache: cache miss and fail-on-cache-miss is on: no cache at any of the keys; tried t[0-9]+/acme/web/file/[0-9a-f]{32}/[0-9a-f]{32}\.tar\.zst, t[0-9]+/acme/web/file/[0-9a-f]{32}/\* \(newest, any manifest\)$"

  # A binary that cannot run restores nothing: a miss too. Without the key, soft-fail goes on.
  mkdir -p "$BATS_TEST_TMPDIR/no-binaries"
  S3_CACHE_BIN_DIR="$BATS_TEST_TMPDIR/no-binaries" run_hook pre-command
  assert_failure 1
  assert_output --partial "+++ :rotating_light: s3-cache: cannot run the pre-command hook: a cache miss, and fail-on-cache-miss is on"
  S3_CACHE_BIN_DIR="$BATS_TEST_TMPDIR/no-binaries" BUILDKITE_PLUGIN_S3_CACHE_FAIL_ON_CACHE_MISS=maybe run_hook pre-command
  assert_failure 1
  assert_output --partial 'invalid configuration: fail-on-cache-miss: invalid value "maybe": want true or false'
  unset BUILDKITE_PLUGIN_S3_CACHE_FAIL_ON_CACHE_MISS
  S3_CACHE_BIN_DIR="$BATS_TEST_TMPDIR/no-binaries" run_hook pre-command
  assert_success

  # A hit passes.
  run_hook post-command
  assert_success
  export BUILDKITE_PLUGIN_S3_CACHE_FAIL_ON_CACHE_MISS=true
  run_hook pre-command
  assert_success
  [ "$(exported BUILDKITE_PLUGIN_S3_CACHE_HIT)" = exact ]
}

@test "two post-commands saving one key at the same moment both succeed and store one object" {
  new_job first
  make_project
  file_level_config
  run_hook pre-command
  assert_success
  first="$CHECKOUT" first_env=$(export -p)
  new_job second
  make_project
  file_level_config
  run_hook pre-command
  assert_success
  second="$CHECKOUT" second_env=$(export -p)

  # Both jobs computed the same key; save it at the same moment.
  (eval "$first_env" && cd "$first" && bash -c '. "$PLUGIN_DIR/hooks/post-command"') >"$BATS_TEST_TMPDIR/a.log" 2>&1 &
  a=$!
  (eval "$second_env" && cd "$second" && bash -c '. "$PLUGIN_DIR/hooks/post-command"') >"$BATS_TEST_TMPDIR/b.log" 2>&1 &
  b=$!
  wait "$a"
  wait "$b"
  cat "$BATS_TEST_TMPDIR/a.log" "$BATS_TEST_TMPDIR/b.log"
  [ "$(objects | wc -l)" -eq 1 ]
  # One job stored it; the other found it stored (by HEAD, or by losing the conditional create).
  [ "$(cat "$BATS_TEST_TMPDIR/a.log" "$BATS_TEST_TMPDIR/b.log" | grep -c "^Saved t")" -eq 1 ]
  cat "$BATS_TEST_TMPDIR/a.log" "$BATS_TEST_TMPDIR/b.log" | grep -Eq "^(Another job already saved|Cache already saved at) t"
  etag=$(objects | awk '{print $3}')

  # A later job with other contents under the same key leaves the stored object alone.
  new_job third
  make_project
  echo changed >"$CHECKOUT/node_modules/pkg/extra"
  file_level_config
  run_hook post-command
  assert_success
  [ "$(objects | awk '{print $3}')" = "$etag" ]
}

@test "post-command saves under the key pre-command computed, even if the command changed the manifest" {
  new_job first
  make_project
  file_level_config
  run_hook pre-command
  assert_success
  echo '{"rewritten": "by npm install"}' >"$CHECKOUT/package-lock.json"
  run_hook post-command
  assert_success
  src="$CHECKOUT"

  new_job second
  echo '{"lockfileVersion": 3}' >"$CHECKOUT/package-lock.json"
  file_level_config
  run_hook pre-command
  assert_success
  [ "$(exported BUILDKITE_PLUGIN_S3_CACHE_HIT)" = exact ]
  diff <(tree_listing "$src/node_modules") <(tree_listing "$CHECKOUT/node_modules")
}

@test "the binaries print their version" {
  run "$BIN/pre-command" --version
  assert_success
  assert_output --regexp "^s3-cache pre-command .+ \((linux|darwin|windows)/(amd64|arm64)\)$"
  run "$BIN/post-command" --version
  assert_success
  assert_output --partial "s3-cache post-command"
}

@test "a failed command saves nothing unless when says so" {
  new_job
  make_project
  file_level_config
  run_hook pre-command
  export BUILDKITE_COMMAND_EXIT_STATUS=2
  run_hook post-command
  assert_success
  assert_output --partial "The command failed (exit status 2) and when is on-success"
  [ "$(objects | wc -l)" -eq 0 ]
  export BUILDKITE_PLUGIN_S3_CACHE_WHEN=always
  run_hook post-command
  assert_success
  [ "$(objects | wc -l)" -eq 1 ]
}

@test "one step can use the plugin twice" {
  new_job
  make_project
  mkdir -p "$CHECKOUT/vendor" && echo gem >"$CHECKOUT/vendor/gem.rb"
  echo lock >"$CHECKOUT/Gemfile.lock"
  # Instance A: node_modules at file level; instance B: vendor at step level.
  a_env() { file_level_config; }
  b_env() {
    unset BUILDKITE_PLUGIN_S3_CACHE_MANIFEST
    export BUILDKITE_PLUGIN_S3_CACHE_PATH=vendor BUILDKITE_PLUGIN_S3_CACHE_RESTORE=step BUILDKITE_PLUGIN_S3_CACHE_SAVE=step
  }
  a_env && run_hook pre-command && assert_success
  b_env && run_hook pre-command && assert_success
  a_env && run_hook post-command && assert_success
  b_env && run_hook post-command && assert_success
  objects
  [ "$(objects | grep -c /file/)" -eq 1 ]
  [ "$(objects | grep -c /step/npm-install/)" -eq 1 ]
  # Both state files were consumed.
  [ -z "$(find "${TMPDIR:-/tmp}" -maxdepth 2 -name "s3-cache-${BUILDKITE_JOB_ID}-*" 2>/dev/null)" ]
}

@test "a state directory planted by another user is refused, and the job still saves" {
  [ "$(id -u)" -eq 0 ] || fail "this test plants a directory of another user: run it as root"
  new_job
  make_project
  file_level_config
  export TMPDIR="$BATS_TEST_TMPDIR/tmp"
  mkdir -p "$TMPDIR/s3-cache-0"
  chown 65534:65534 "$TMPDIR/s3-cache-0"
  run_hook pre-command
  assert_success
  assert_output --partial "refusing $TMPDIR/s3-cache-0: it is owned by uid 65534, not by this user (uid 0); remove it"
  [ -z "$(find "$TMPDIR/s3-cache-0" -mindepth 1)" ]
  run_hook post-command
  assert_success
  assert_output --partial "Saved t"
}

@test "the shim builds the binary with go when no override is set, and reuses it" {
  # A clean, unreleased checkout of the plugin as it is in this working tree.
  local copy="$BATS_TEST_TMPDIR/plugin"
  mkdir -p "$copy"
  (cd "$PLUGIN_DIR" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$copy")
  git -C "$copy" init -q
  git -C "$copy" add -A
  git -C "$copy" -c user.email=t@example.com -c user.name=t commit -qm snapshot
  rev=$(git -C "$copy" rev-parse HEAD)

  new_job
  make_project
  file_level_config
  unset S3_CACHE_BIN_DIR
  PLUGIN_DIR="$copy" run_hook pre-command
  assert_success
  assert_output --partial "Cache miss"
  bin=$(find "$copy/.s3-cache-bin/$rev" -type f -name pre-command)
  assert_file_executable "$bin"
  built=$(stat -c %Y.%i "$bin")

  # The next job finds it cached for this revision and builds nothing.
  sleep 1
  PLUGIN_DIR="$copy" run_hook pre-command
  assert_success
  [ "$(stat -c %Y.%i "$bin")" = "$built" ]
  [ "$(find "$copy/.s3-cache-bin" -type f | wc -l)" -eq 1 ]
}

@test "AWS_ENDPOINT_URL works in place of the endpoint key" {
  new_job
  make_project
  file_level_config
  export AWS_ENDPOINT_URL="$BUILDKITE_PLUGIN_S3_CACHE_ENDPOINT"
  unset BUILDKITE_PLUGIN_S3_CACHE_ENDPOINT
  run_hook pre-command
  assert_success
  run_hook post-command
  assert_success
  assert_output --partial "Saved t"
  [ "$(objects | wc -l)" -eq 1 ]
}

@test "missing credentials are a warning that says so, and a failure with soft-fail false" {
  new_job
  make_project
  file_level_config
  unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
  # No shared files, and no instance metadata service to ask (nothing outside loopback).
  export AWS_SHARED_CREDENTIALS_FILE="$BATS_TEST_TMPDIR/none" AWS_CONFIG_FILE="$BATS_TEST_TMPDIR/none"
  export AWS_EC2_METADATA_DISABLED=true
  run_hook pre-command
  assert_success
  assert_output --partial ":warning: s3-cache:"
  assert_output --partial "credentials"
  export BUILDKITE_PLUGIN_S3_CACHE_SOFT_FAIL=false
  run_hook pre-command
  assert_failure 1
  assert_output --partial "credentials"
}
