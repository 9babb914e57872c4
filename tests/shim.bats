#!/usr/bin/env bats
# Unit tests of lib/shim.bash's pure parts.

load helpers

setup() {
  # shellcheck source=lib/shim.bash
  . "$PLUGIN_DIR/lib/shim.bash"
  repo="$BATS_TEST_TMPDIR/plugin"
  git init -q "$repo"
}

@test "the download base comes from the checkout's remote" {
  for remote in https://github.com/acme/s3-cache-buildkite-plugin.git \
    https://github.com/acme/s3-cache-buildkite-plugin \
    git@github.com:acme/s3-cache-buildkite-plugin.git \
    ssh://git@github.com/acme/s3-cache-buildkite-plugin.git; do
    git -C "$repo" remote remove origin 2>/dev/null || true
    git -C "$repo" remote add origin "$remote"
    run s3_cache_download_base "$repo"
    assert_success
    assert_output "https://github.com/acme/s3-cache-buildkite-plugin/releases/download"
  done
  S3_CACHE_DOWNLOAD_URL=http://mirror.internal/s3-cache/ run s3_cache_download_base "$repo"
  assert_output "http://mirror.internal/s3-cache"
}

@test "the version is the VERSION file, else an exact tag, else none" {
  git -C "$repo" -c user.email=t@t -c user.name=t commit -q --allow-empty -m one
  run s3_cache_version "$repo"
  assert_output ""
  git -C "$repo" tag v1.2.3
  run s3_cache_version "$repo"
  assert_output "v1.2.3"
  echo "v2.0.0" >"$repo/VERSION"
  run s3_cache_version "$repo"
  assert_output "v2.0.0"
}

@test "platforms map to release names; others are refused" {
  uname() { case "$1" in -s) echo "$OS" ;; -m) echo "$ARCH" ;; esac; }
  for case in "Linux x86_64 linux_amd64" "Linux aarch64 linux_arm64" "Darwin arm64 darwin_arm64" \
    "Darwin x86_64 darwin_amd64" "MINGW64_NT-10.0 x86_64 windows_amd64" "MSYS_NT-10.0 x86_64 windows_amd64"; do
    read -r OS ARCH want <<<"$case"
    run s3_cache_platform
    assert_success
    assert_output "$want"
  done
  OS=FreeBSD ARCH=amd64 run s3_cache_platform
  assert_failure
  assert_output --partial "unsupported operating system 'FreeBSD'"
  OS=Linux ARCH=riscv64 run s3_cache_platform
  assert_failure
  assert_output --partial "unsupported architecture 'riscv64'"
}

@test "running a hook leaves the caller's signal traps as they were" {
  mkdir -p "$BATS_TEST_TMPDIR/bin"
  printf '#!/bin/sh\nexit 0\n' >"$BATS_TEST_TMPDIR/bin/pre-command"
  chmod +x "$BATS_TEST_TMPDIR/bin/pre-command"
  run bash -c 'trap "echo caller" TERM; . "$1/lib/shim.bash"; S3_CACHE_BIN_DIR="$2" s3_cache_run pre-command; trap -p TERM' \
    _ "$PLUGIN_DIR" "$BATS_TEST_TMPDIR/bin"
  assert_success
  assert_output "trap -- 'echo caller' SIGTERM"
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
  s3_cache_plugin_dir() { echo "$repo"; }
  # Nothing may be created or fetched: record any attempt.
  for tool in curl wget mkdir mktemp mv; do
    eval "$tool() { echo \"$tool \$*\" >>\"\$BATS_TEST_TMPDIR/attempts\"; return 1; }"
  done
  (
    unset HOME XDG_CACHE_HOME S3_CACHE_BINARY_CACHE S3_CACHE_BIN_DIR
    run s3_cache_resolve pre-command
    assert_not_exist "$BATS_TEST_TMPDIR/attempts"
    assert_failure 1
    assert_output "s3-cache: no directory to cache the plugin's binary in: HOME and XDG_CACHE_HOME are unset (or not absolute paths); set HOME, or S3_CACHE_BINARY_CACHE to an absolute directory"
  )
  unset -f curl wget mkdir mktemp mv
  for env in "-u HOME -u XDG_CACHE_HOME" "HOME= XDG_CACHE_HOME=" "HOME=relative XDG_CACHE_HOME=also/relative"; do
    # shellcheck disable=SC2086 # $env is several arguments
    run env -u S3_CACHE_BINARY_CACHE $env bash -c '. "$1/lib/shim.bash"; s3_cache_binary_root' _ "$PLUGIN_DIR"
    assert_failure
    assert_output --partial "no directory to cache the plugin's binary in"
  done
  S3_CACHE_BINARY_CACHE=rel/dir run s3_cache_binary_root
  assert_failure
  assert_output --partial "S3_CACHE_BINARY_CACHE=rel/dir is not an absolute path"
  # The XDG base directory spec: a relative XDG_CACHE_HOME is ignored.
  HOME=/home/u XDG_CACHE_HOME=rel run s3_cache_binary_root
  assert_output /home/u/.cache/s3-cache/bin
  HOME=/home/u XDG_CACHE_HOME=/xdg/ run s3_cache_binary_root
  assert_output /xdg/s3-cache/bin
}

@test "binaries from different download bases, or versions, are cached apart" {
  a=$(s3_cache_binary_dir /c https://github.com/acme/s3-cache-buildkite-plugin/releases/download v1.0.0 linux_amd64)
  b=$(s3_cache_binary_dir /c https://github.com/fork/s3-cache-buildkite-plugin/releases/download v1.0.0 linux_amd64)
  c=$(s3_cache_binary_dir /c https://github.com/acme/s3-cache-buildkite-plugin/releases/download v1.0.1 linux_amd64)
  [[ "$a" == /c/*/v1.0.0/linux_amd64 && "$a" != "$b" && "$a" != "$c" ]]
  [ "$(s3_cache_binary_dir /c https://github.com/acme/s3-cache-buildkite-plugin/releases/download v1.0.0 linux_amd64)" = "$a" ]
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
  assert_output "$dir/pre-command"

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
  assert_output "$dir/pre-command"
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
