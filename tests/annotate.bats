#!/usr/bin/env bats
# The annotate key through the shims, against a real versitygw, with a buildkite-agent stub on
# PATH that records each call's arguments and the Markdown it reads from stdin.

load helpers

setup_file() { start_server; }
teardown_file() { stop_server; }

# agent_stub [STATUS]: a buildkite-agent that records its arguments as a line of
# $BATS_TEST_TMPDIR/agent/calls and its stdin as agent/body.<n>, then exits STATUS.
agent_stub() {
  mkdir -p "$BATS_TEST_TMPDIR/agent"
  cat >"$BATS_TEST_TMPDIR/stub/buildkite-agent" <<STUB
#!/usr/bin/env bash
dir="$BATS_TEST_TMPDIR/agent"
n=\$(cat "\$dir/calls" 2>/dev/null | wc -l)
echo "\$*" >>"\$dir/calls"
cat >"\$dir/body.\$n"
[[ "${1:-0}" -eq 0 ]] || echo "fatal: Failed to annotate build: POST 401 Unauthorized" >&2
exit ${1:-0}
STUB
  chmod +x "$BATS_TEST_TMPDIR/stub/buildkite-agent"
}

calls() { cat "$BATS_TEST_TMPDIR/agent/calls" 2>/dev/null; }
body() { cat "$BATS_TEST_TMPDIR/agent/body.$1"; }

# A job of the step "deps" (parallel job INDEX of 2) caching node_modules at the file level.
parallel_job() {
  new_job "job$1"
  export BUILDKITE_STEP_ID=step-deps BUILDKITE_PARALLEL_JOB="$1" BUILDKITE_PARALLEL_JOB_COUNT=2
  mkdir -p "$CHECKOUT/node_modules/pkg"
  echo '{"lockfileVersion": 3}' >"$CHECKOUT/package-lock.json"
  echo 'module.exports = 1' >"$CHECKOUT/node_modules/pkg/index.js"
  export BUILDKITE_PLUGIN_S3_CACHE_PATH=node_modules BUILDKITE_PLUGIN_S3_CACHE_MANIFEST=package-lock.json
  export BUILDKITE_PLUGIN_S3_CACHE_RESTORE=file BUILDKITE_PLUGIN_S3_CACHE_SAVE=file
  export BUILDKITE_PLUGIN_S3_CACHE_ANNOTATE=true
  agent_stub
}

# shellcheck disable=SC2016 # the backticks are Markdown
header='| s3-cache `node_modules` | level | result | size | entries | time | throughput |'
size='[0-9.]+ (B|KiB)'
took='[0-9.]+(ms|s|µs)'

@test "the jobs of a parallel step append their restores and saves to one annotation" {
  parallel_job 0
  run_hook pre-command
  assert_success
  assert_output --partial "Cache miss"
  run_hook post-command
  assert_success
  assert_output --partial "Saved t"
  [ "$(objects | wc -l)" -eq 1 ]

  # The second job of the step; the stub keeps recording after the first job's calls.
  parallel_job 1
  run_hook pre-command
  assert_success
  assert_output --partial "Cache hit (exact, file level)"
  run_hook post-command
  assert_success

  calls
  [ "$(calls | wc -l)" -eq 4 ]
  run calls
  assert_line --index 0 --regexp '^annotate --context s3-cache-[0-9a-f]{16} --style info --append$'
  [ "$(calls | sort -u | wc -l)" -eq 1 ] # one context for the whole step
  for n in 0 1 2 3; do
    run body "$n"
    assert_line --index 0 "$header"
  done
  run body 0
  assert_line --index 2 --regexp "^\| restore \(job 1 of 2\) \| — \| miss \| — \| — \| $took \| — \|$"
  run body 1
  assert_line --index 2 --regexp "^\| save \(job 1 of 2\) \| file \| saved \| $size \| 3 \| $took \| $size/s \|$"
  run body 2
  assert_line --index 2 --regexp "^\| restore \(job 2 of 2\) \| file \| exact hit \| $size \| 3 \| $took \| $size/s \|$"
  run body 3
  assert_line --index 2 --regexp "^\| save \(job 2 of 2\) \| file \| not saved: restored as an exact hit \| — \| — \| — \| — \|$"

  # Another step has its own annotation.
  context=$(calls | head -1)
  rm "$BATS_TEST_TMPDIR"/agent/*
  parallel_job 0
  export BUILDKITE_STEP_ID=step-other
  run_hook pre-command
  assert_success
  [ "$(wc -l <"$BATS_TEST_TMPDIR/agent/calls")" -eq 1 ]
  [ "$(calls)" != "$context" ]
}

@test "without annotate: true the hooks never run buildkite-agent" {
  parallel_job 0
  unset BUILDKITE_PLUGIN_S3_CACHE_ANNOTATE
  run_hook pre-command
  assert_success
  run_hook post-command
  assert_success
  assert_output --partial "Saved t"
  [ -z "$(calls)" ]
}

@test "a failing buildkite-agent is a warning, even with soft-fail false" {
  parallel_job 0
  agent_stub 1
  export BUILDKITE_PLUGIN_S3_CACHE_SOFT_FAIL=false
  run_hook pre-command
  assert_success
  assert_output --partial ":warning: s3-cache: could not annotate the build (buildkite-agent annotate): exit status 1: fatal: Failed to annotate build: POST 401 Unauthorized"
  [ "$(exported BUILDKITE_PLUGIN_S3_CACHE_HIT)" = miss ]
  run_hook post-command
  assert_success
  assert_output --partial "Saved t"
  [ "$(calls | wc -l)" -eq 2 ]
}
