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
