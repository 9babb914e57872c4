#!/usr/bin/env bats
# Unit tests of lib/shim.bash's pure parts.

load helpers

setup() {
  # shellcheck source=lib/shim.bash
  . "$PLUGIN_DIR/lib/shim.bash"
  repo="$BATS_TEST_TMPDIR/plugin"
  git init -q "$repo"
}

# reply FUNCTION ARGS...: runs a function that hands back its result in REPLY, and prints it.
reply() {
  local REPLY=""
  "$@" || return
  printf '%s\n' "$REPLY"
}

@test "the download base comes from the checkout's remote" {
  for remote in https://github.com/acme/s3-cache-buildkite-plugin.git \
    https://github.com/acme/s3-cache-buildkite-plugin \
    git@github.com:acme/s3-cache-buildkite-plugin.git \
    ssh://git@github.com/acme/s3-cache-buildkite-plugin.git; do
    git -C "$repo" remote remove origin 2>/dev/null || true
    git -C "$repo" remote add origin "$remote"
    run reply s3_cache_download_base "$repo"
    assert_success
    assert_output "https://github.com/acme/s3-cache-buildkite-plugin/releases/download"
  done
  S3_CACHE_DOWNLOAD_URL=http://mirror.internal/s3-cache/ run reply s3_cache_download_base "$repo"
  assert_output "http://mirror.internal/s3-cache"
}

@test "the version is the VERSION file, else an exact tag, else none" {
  git -C "$repo" -c user.email=t@t -c user.name=t commit -q --allow-empty -m one
  run reply s3_cache_version "$repo"
  assert_output ""
  git -C "$repo" tag v1.2.3
  run reply s3_cache_version "$repo"
  assert_output "v1.2.3"
  printf 'v2.0.0 \r\n' >"$repo/VERSION"
  run reply s3_cache_version "$repo"
  assert_output "v2.0.0"
}

@test "platforms map to release names from bash's OSTYPE and HOSTTYPE; others are refused" {
  # uname is asked only when bash was built for a system not named here; record every call.
  uname() {
    echo "uname $*" >>"$BATS_TEST_TMPDIR/uname.calls"
    case "$1" in -s) echo "$UNAME_S" ;; -m) echo "$UNAME_M" ;; esac
  }
  for case in "linux-gnu x86_64 linux_amd64" "linux-musl x86_64 linux_amd64" "linux-gnu aarch64 linux_arm64" \
    "darwin23 arm64 darwin_arm64" "darwin19.6.0 x86_64 darwin_amd64" "darwin23.0 aarch64 darwin_arm64" \
    "msys x86_64 windows_amd64" "cygwin x86_64 windows_amd64" "msys aarch64 windows_arm64"; do
    read -r os arch want <<<"$case"
    OSTYPE=$os HOSTTYPE=$arch run reply s3_cache_platform
    assert_success
    assert_output "$want"
  done
  assert_not_exist "$BATS_TEST_TMPDIR/uname.calls"

  # A 32-bit bash on a 64-bit system: the kernel's answer, as before.
  OSTYPE=msys HOSTTYPE=i686 UNAME_M=x86_64 run reply s3_cache_platform
  assert_success
  assert_output windows_amd64
  OSTYPE=linux-gnueabihf HOSTTYPE=arm UNAME_M=aarch64 run reply s3_cache_platform
  assert_success
  assert_output linux_arm64

  OSTYPE=freebsd14.0 HOSTTYPE=amd64 UNAME_S=FreeBSD run reply s3_cache_platform
  assert_failure
  assert_output "s3-cache: unsupported operating system 'FreeBSD': releases exist for Linux, macOS and Windows (Git Bash)"
  OSTYPE=linux-gnu HOSTTYPE=riscv64 UNAME_M=riscv64 run reply s3_cache_platform
  assert_failure
  assert_output "s3-cache: unsupported architecture 'riscv64': releases exist for amd64 and arm64"
}

@test "the hooks find the shim and the plugin's absolute path from however they are sourced" {
  local plugin="$BATS_TEST_TMPDIR/agent/plugins/s3-cache" job="$BATS_TEST_TMPDIR/agent/builds/job"
  mkdir -p "$plugin" "$job" "$BATS_TEST_TMPDIR/bin"
  cp -r "$PLUGIN_DIR/hooks" "$PLUGIN_DIR/lib" "$plugin/"
  ln -s "$plugin" "$BATS_TEST_TMPDIR/link"
  printf '#!/bin/sh\necho "plugin=$S3_CACHE_PLUGIN_DIR"\n' >"$BATS_TEST_TMPDIR/bin/post-command"
  chmod +x "$BATS_TEST_TMPDIR/bin/post-command"
  local tools="$BATS_TEST_TMPDIR/tools" tool
  mkdir -p "$tools"
  for tool in mktemp rm; do ln -s "$(type -P "$tool")" "$tools/$tool"; done
  export S3_CACHE_BIN_DIR="$BATS_TEST_TMPDIR/bin"
  # "<cwd> <hook as sourced> <plugin dir the binary is told>"
  for case in "$job $plugin/hooks/post-command $plugin" \
    "$plugin hooks/post-command $plugin" \
    "$plugin ./hooks/post-command $plugin" \
    "$plugin/hooks post-command $plugin" \
    "$plugin/hooks ./post-command $plugin" \
    "$plugin/lib ../hooks/post-command $plugin" \
    "$job ../../plugins/s3-cache/hooks/post-command $plugin" \
    "$job $BATS_TEST_TMPDIR/link/hooks/post-command $BATS_TEST_TMPDIR/link" \
    "$BATS_TEST_TMPDIR/link/hooks post-command $BATS_TEST_TMPDIR/link" \
    "/ ${plugin#/}/hooks/post-command $plugin"; do
    read -r cwd hook want <<<"$case"
    # Only the programs the shim runs on this path on the PATH: `. post-command` looks there first.
    run bash -c 'cd "$1" && PATH="$2" && . "$3"' _ "$cwd" "$tools" "$hook"
    assert_success
    assert_output "plugin=$want"
  done
}

@test "running a hook leaves the caller's signal traps as they were" {
  mkdir -p "$BATS_TEST_TMPDIR/bin"
  printf '#!/bin/sh\nexit 0\n' >"$BATS_TEST_TMPDIR/bin/pre-command"
  chmod +x "$BATS_TEST_TMPDIR/bin/pre-command"
  run bash -c 'trap "echo caller" TERM; . "$1/lib/shim.bash"; S3_CACHE_BIN_DIR="$2" s3_cache_run pre-command; trap -p TERM' \
    _ "$PLUGIN_DIR" "$BATS_TEST_TMPDIR/bin"
  assert_success
  assert_output "trap -- 'echo caller' SIGTERM"

  # Both signals, a trap of several lines and quotes, and none at all.
  cat >"$BATS_TEST_TMPDIR/caller" <<'CALLER'
case "$3" in
  set)
    trap 'echo caller' TERM
    trap 'echo "the caller'\''s"
echo "second line"' INT
    ;;
esac
before=$(trap -p TERM INT)
. "$1/lib/shim.bash"
S3_CACHE_BIN_DIR="$2" s3_cache_run pre-command
after=$(trap -p TERM INT)
[[ "$before" == "$after" ]] && echo "the same: ${after:-none}" || printf 'before:\n%s\nafter:\n%s\n' "$before" "$after"
CALLER
  run bash "$BATS_TEST_TMPDIR/caller" "$PLUGIN_DIR" "$BATS_TEST_TMPDIR/bin" set
  assert_success
  assert_line --index 0 "the same: trap -- 'echo caller' SIGTERM"
  assert_line "echo \"second line\"' SIGINT"
  run bash "$BATS_TEST_TMPDIR/caller" "$PLUGIN_DIR" "$BATS_TEST_TMPDIR/bin" none
  assert_success
  assert_output "the same: none"
}

@test "a cached, verified release binary starts with no program but stat, mktemp and rm" {
  # Each program a hook runs costs about 5 ms of its start (issue 10: at most 50 ms in all). The
  # PATH holds only these, each recording its run, so that any other is not found.
  local plugin="$BATS_TEST_TMPDIR/released" tools="$BATS_TEST_TMPDIR/tools" tool
  mkdir -p "$plugin" "$tools" "$BATS_TEST_TMPDIR/tmp"
  cp -r "$PLUGIN_DIR/hooks" "$PLUGIN_DIR/lib" "$plugin/"
  echo v1.2.3 >"$plugin/VERSION"
  for tool in stat mktemp rm; do
    printf '#!/bin/sh\necho %s >>"%s"\nexec %s "$@"\n' "$tool" "$BATS_TEST_TMPDIR/ran" "$(type -P "$tool")" >"$tools/$tool"
    chmod +x "$tools/$tool"
  done
  export S3_CACHE_BINARY_CACHE="$BATS_TEST_TMPDIR/cache" S3_CACHE_DOWNLOAD_URL=https://mirror.internal/s3-cache
  export TMPDIR="$BATS_TEST_TMPDIR/tmp"
  unset S3_CACHE_BIN_DIR
  s3_cache_platform
  s3_cache_binary_dir "$S3_CACHE_BINARY_CACHE" "$S3_CACHE_DOWNLOAD_URL" v1.2.3 "$REPLY"
  dir=$REPLY
  mkdir -p "$dir"
  printf '#!/bin/sh\necho "released, plugin=$S3_CACHE_PLUGIN_DIR, bin cache=$S3_CACHE_BINARY_CACHE_DIR"\n' >"$dir/pre-command"
  chmod 755 "$dir/pre-command"
  s3_cache_sha256 <"$dir/pre-command" >"$dir/pre-command.sha256"
  # The note a check leaves once the binary's times are 2 s old: it is not hashed again.
  echo "$(cat "$dir/pre-command.sha256") $(stat -c '%d %i %s %Y %Z' "$dir/pre-command")" >"$dir/pre-command.verified"

  run bash -c 'cd "$1" && PATH="$2" && . "$3"' _ "$BATS_TEST_TMPDIR" "$tools" "$plugin/hooks/pre-command"
  assert_success
  assert_output "released, plugin=$plugin, bin cache=$S3_CACHE_BINARY_CACHE"
  run cat "$BATS_TEST_TMPDIR/ran"
  assert_output $'stat\nmktemp\nrm'
  run ls -A "$TMPDIR"
  assert_output ""

  # S3_CACHE_BIN_DIR: no check, so no stat.
  rm "$BATS_TEST_TMPDIR/ran"
  mkdir "$BATS_TEST_TMPDIR/bin"
  cp "$dir/pre-command" "$BATS_TEST_TMPDIR/bin/"
  S3_CACHE_BIN_DIR="$BATS_TEST_TMPDIR/bin" run bash -c 'cd "$1" && PATH="$2" && . "$3"' _ "$BATS_TEST_TMPDIR" "$tools" "$plugin/hooks/pre-command"
  assert_success
  assert_output "released, plugin=$plugin, bin cache="
  run cat "$BATS_TEST_TMPDIR/ran"
  assert_output $'mktemp\nrm'
}

# soft-fail as strconv.ParseBool reads it, the binary's parser: "<value> <true|false|invalid>".
SOFT_FAIL_CASES=(
  "UNSET true" "1 true" "t true" "T true" "TRUE true" "true true" "True true"
  "0 false" "f false" "F false" "FALSE false" "false false" "False false"
  "EMPTY invalid" "yes invalid" "no invalid" "on invalid" "tRUE invalid" "' true' invalid" "2 invalid"
)

@test "the shim reads soft-fail as the binary does: ParseBool's words, anything else a configuration error" {
  for case in "${SOFT_FAIL_CASES[@]}"; do
    eval "set -- $case"
    case "$1" in
      UNSET) unset BUILDKITE_PLUGIN_S3_CACHE_SOFT_FAIL ;;
      EMPTY) export BUILDKITE_PLUGIN_S3_CACHE_SOFT_FAIL= ;;
      *) export BUILDKITE_PLUGIN_S3_CACHE_SOFT_FAIL="$1" ;;
    esac
    # The binary cannot be found: soft-fail decides.
    S3_CACHE_BIN_DIR="$BATS_TEST_TMPDIR/none" run s3_cache_run pre-command
    case "$2" in
      true)
        assert_success
        assert_output --partial "the build goes on without the cache (soft-fail is on)"
        ;;
      false)
        assert_failure 1
        assert_output --partial "+++ :rotating_light: s3-cache: cannot run the pre-command hook"
        ;;
      invalid)
        assert_failure 1
        assert_output --partial "s3-cache: invalid configuration: soft-fail: invalid value \"${BUILDKITE_PLUGIN_S3_CACHE_SOFT_FAIL}\": want true or false"
        ;;
    esac
  done
}

@test "with no HOME, XDG_CACHE_HOME or S3_CACHE_BINARY_CACHE there is no binary cache, and no download" {
  echo v1.2.3 >"$repo/VERSION"
  git -C "$repo" remote add origin https://github.com/acme/s3-cache-buildkite-plugin.git
  # Nothing may be created or fetched: record any attempt.
  for tool in curl wget mkdir mktemp mv; do
    eval "$tool() { echo \"$tool \$*\" >>\"\$BATS_TEST_TMPDIR/attempts\"; return 1; }"
  done
  (
    unset HOME XDG_CACHE_HOME S3_CACHE_BINARY_CACHE S3_CACHE_BIN_DIR
    run s3_cache_resolve pre-command "$repo"
    assert_not_exist "$BATS_TEST_TMPDIR/attempts"
    assert_failure 1
    assert_output "s3-cache: no directory to cache the plugin's binary in: HOME and XDG_CACHE_HOME are unset (or not absolute paths); set HOME, or S3_CACHE_BINARY_CACHE to an absolute directory"
  )
  unset -f curl wget mkdir mktemp mv
  for env in "-u HOME -u XDG_CACHE_HOME" "HOME= XDG_CACHE_HOME=" "HOME=relative XDG_CACHE_HOME=also/relative"; do
    # shellcheck disable=SC2086 # $env is several arguments
    run env -u S3_CACHE_BINARY_CACHE $env bash -c '. "$1/lib/shim.bash"; s3_cache_binary_root && echo "$REPLY"' _ "$PLUGIN_DIR"
    assert_failure
    assert_output --partial "no directory to cache the plugin's binary in"
  done
  S3_CACHE_BINARY_CACHE=rel/dir run reply s3_cache_binary_root
  assert_failure
  assert_output --partial "S3_CACHE_BINARY_CACHE=rel/dir is not an absolute path"
  # The XDG base directory spec: a relative XDG_CACHE_HOME is ignored.
  HOME=/home/u XDG_CACHE_HOME=rel run reply s3_cache_binary_root
  assert_output /home/u/.cache/s3-cache/bin
  HOME=/home/u XDG_CACHE_HOME=/xdg/ run reply s3_cache_binary_root
  assert_output /xdg/s3-cache/bin
}

@test "binaries from different download bases, or versions, are cached apart" {
  a=$(reply s3_cache_binary_dir /c https://github.com/acme/s3-cache-buildkite-plugin/releases/download v1.0.0 linux_amd64)
  b=$(reply s3_cache_binary_dir /c https://github.com/fork/s3-cache-buildkite-plugin/releases/download v1.0.0 linux_amd64)
  c=$(reply s3_cache_binary_dir /c https://github.com/acme/s3-cache-buildkite-plugin/releases/download v1.0.1 linux_amd64)
  [[ "$a" == /c/https_3a_2f_2fgithub.com_2facme_2fs3-cache-buildkite-plugin_2freleases_2fdownload/v1.0.0/linux_amd64 ]]
  [[ "$a" != "$b" && "$a" != "$c" ]]
  [ "$(reply s3_cache_binary_dir /c https://github.com/acme/s3-cache-buildkite-plugin/releases/download v1.0.0 linux_amd64)" = "$a" ]
}

# cache_released_binary puts a released pre-command and its recorded SHA-256 in $dir, as a
# verified download leaves them.
cache_released_binary() {
  dir="$BATS_TEST_TMPDIR/cache"
  mkdir -p "$dir"
  printf '#!/bin/sh\necho released\n' >"$dir/pre-command"
  chmod 755 "$dir/pre-command"
  s3_cache_sha256 <"$dir/pre-command" >"$dir/pre-command.sha256"
}

@test "a cached binary runs only while its SHA-256 is the one recorded at download" {
  cache_released_binary
  run s3_cache_cached "$dir/pre-command"
  assert_success
  assert_output ""

  printf '#!/bin/sh\necho tampered\n' >"$dir/pre-command"
  tampered=$(s3_cache_sha256 <"$dir/pre-command")
  run s3_cache_cached "$dir/pre-command"
  assert_failure
  assert_output --partial "s3-cache: the cached $dir/pre-command has SHA-256 $tampered but was $(cat "$dir/pre-command.sha256")"
  assert_not_exist "$dir/pre-command"

  # No record: not trusted either.
  printf '#!/bin/sh\necho released\n' >"$dir/pre-command"
  rm "$dir/pre-command.sha256"
  run s3_cache_cached "$dir/pre-command"
  assert_failure
  assert_not_exist "$dir/pre-command"
}

# A hook binary that plants, while it runs, a file of another user's where its env file goes, as
# another local user could (env file names in a shared /tmp are predictable), and records the
# directory's mode and owner.
planting_binary() {
  mkdir -p "$BATS_TEST_TMPDIR/bin"
  cat >"$BATS_TEST_TMPDIR/bin/pre-command" <<'BIN'
#!/usr/bin/env bash
env_file="$2"
stat -c '%a %u' "$(dirname "$env_file")" >"$BATS_TEST_TMPDIR/env-dir"
echo "BUILDKITE_PLUGIN_S3_CACHE_BUCKET=attackers-bucket" >"$env_file"
chown 65534:65534 "$env_file"
BIN
  chmod +x "$BATS_TEST_TMPDIR/bin/pre-command"
}

@test "the env file is in a private directory, and one the job user does not own is ignored" {
  [ "$(id -u)" -eq 0 ] || fail "this test plants a file of another user: run it as root"
  planting_binary
  export BATS_TEST_TMPDIR
  run bash -c '. "$1/lib/shim.bash"; S3_CACHE_BIN_DIR="$2" s3_cache_run pre-command; echo "bucket=${BUILDKITE_PLUGIN_S3_CACHE_BUCKET:-}"' \
    _ "$PLUGIN_DIR" "$BATS_TEST_TMPDIR/bin"
  assert_success
  assert_output --partial ":warning: s3-cache: ignoring"
  assert_output --partial "it is not a regular file of this user's"
  assert_line "bucket="
  [ "$(cat "$BATS_TEST_TMPDIR/env-dir")" = "700 0" ]
  [ -z "$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 's3-cache-env.*' -user 0 -newer "$BATS_TEST_TMPDIR/env-dir")" ]
}

@test "a symlink where the env file goes is not followed" {
  mkdir -p "$BATS_TEST_TMPDIR/bin"
  echo "BUILDKITE_PLUGIN_S3_CACHE_BUCKET=attackers-bucket" >"$BATS_TEST_TMPDIR/theirs"
  cat >"$BATS_TEST_TMPDIR/bin/pre-command" <<'BIN'
#!/usr/bin/env bash
ln -s "$BATS_TEST_TMPDIR/theirs" "$2"
BIN
  chmod +x "$BATS_TEST_TMPDIR/bin/pre-command"
  export BATS_TEST_TMPDIR
  run bash -c '. "$1/lib/shim.bash"; S3_CACHE_BIN_DIR="$2" s3_cache_run pre-command; echo "bucket=${BUILDKITE_PLUGIN_S3_CACHE_BUCKET:-}"' \
    _ "$PLUGIN_DIR" "$BATS_TEST_TMPDIR/bin"
  assert_success
  assert_output --partial "ignoring"
  assert_line "bucket="
  assert_file_exist "$BATS_TEST_TMPDIR/theirs"
}

@test "every SHA-256 tool the shim may use gives the same digest" {
  local tools=0
  for tool in openssl sha256sum shasum; do
    command -v "$tool" >/dev/null || continue
    mkdir -p "$BATS_TEST_TMPDIR/$tool"
    ln -s "$(command -v "$tool")" "$BATS_TEST_TMPDIR/$tool/$tool"
    PATH="$BATS_TEST_TMPDIR/$tool" run s3_cache_sha256 <<<"abc"
    assert_success
    assert_output edeaaff3f1774ad2888673770c6d64097e391bc362d7d6fb34982ddf0efd18cb
    tools=$((tools + 1))
  done
  [ "$tools" -ge 2 ] || fail "only $tools SHA-256 tools found: install openssl and coreutils"
}

@test "a cached binary unchanged since its last check is not hashed again; a changed one is" {
  cache_released_binary
  run s3_cache_cached "$dir/pre-command"
  assert_success
  # Changed too recently to note: a change within the same second would not show in its times.
  assert_not_exist "$dir/pre-command.verified"
  sleep 2
  run s3_cache_cached "$dir/pre-command"
  assert_success
  assert_file_exist "$dir/pre-command.verified"

  # Unchanged: trusted without hashing.
  s3_cache_sha256() { echo "hashed" >>"$BATS_TEST_TMPDIR/hashed"; echo 0; }
  run s3_cache_cached "$dir/pre-command"
  assert_success
  assert_output ""
  assert_not_exist "$BATS_TEST_TMPDIR/hashed"

  # The same size, the same mtime, other bytes: hashed, and refused.
  mtime=$(stat -c %Y "$dir/pre-command")
  printf '#!/bin/sh\necho tampered\n' >"$dir/pre-command"
  touch -d "@$mtime" "$dir/pre-command"
  run s3_cache_cached "$dir/pre-command"
  assert_failure
  assert_file_exist "$BATS_TEST_TMPDIR/hashed"
  assert_output --partial "removing it to download it again"
  assert_not_exist "$dir/pre-command"
}

@test "a cancelled hook whose binary stops at once still removes its env directory" {
  # The agent sends SIGTERM to the hook's process group: the binary may exit before the shim's
  # trap forwards the signal, and that trap must not end the hook (set -e) before its clean-up.
  mkdir -p "$BATS_TEST_TMPDIR/bin" "$BATS_TEST_TMPDIR/tmp"
  printf '#!/bin/sh\ntrap "exit 1" TERM\necho started >"$S3_CACHE_STARTED"\nwhile :; do sleep 0.01; done\n' \
    >"$BATS_TEST_TMPDIR/bin/pre-command"
  chmod +x "$BATS_TEST_TMPDIR/bin/pre-command"
  local i
  for i in $(seq 1 20); do
    rm -f "$BATS_TEST_TMPDIR/started"
    S3_CACHE_STARTED="$BATS_TEST_TMPDIR/started" S3_CACHE_BIN_DIR="$BATS_TEST_TMPDIR/bin" TMPDIR="$BATS_TEST_TMPDIR/tmp" \
      setsid bash -c '. "$1"' _ "$PLUGIN_DIR/hooks/pre-command" 3>&- &
    local hook=$!
    while [[ ! -f "$BATS_TEST_TMPDIR/started" ]]; do sleep 0.01; done
    kill -TERM -- "-$hook"
    wait "$hook" || true
    run ls -A "$BATS_TEST_TMPDIR/tmp"
    assert_output ""
  done
}
