#!/usr/bin/env bash
# Shared by hooks/pre-command and hooks/post-command: find the s3-cache binary for this platform
# and plugin version, run it, and export what it reports to the job's command.
#
# Resolution order (DESIGN §8):
#   1. $S3_CACHE_BIN_DIR/<hook>            an override directory (air-gapped agents, tests)
#   2. a go build from this plugin checkout when Go is installed, cached inside the checkout
#      (.s3-cache-bin/<git revision>/<os>_<arch>/) and reused while the checkout is unchanged
#   3. otherwise a clear error that says what to do
# These functions are sourced by the agent's hook wrapper: they declare their variables local.

s3_cache_plugin_dir() {
  (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
}

# Prints <os>_<arch> as goreleaser names them, or fails for a platform without a release.
s3_cache_platform() {
  local os arch
  case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    MINGW* | MSYS* | CYGWIN*) os=windows ;;
    *)
      echo "s3-cache: unsupported operating system '$(uname -s)': releases exist for Linux, macOS and Windows (Git Bash)" >&2
      return 1
      ;;
  esac
  case "$(uname -m)" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *)
      echo "s3-cache: unsupported architecture '$(uname -m)': releases exist for amd64 and arm64" >&2
      return 1
      ;;
  esac
  echo "${os}_${arch}"
}

# Builds the hook's binary from the plugin checkout into the cache inside it; prints its path.
s3_cache_go_build() {
  local hook="$1" dir="$2" platform="$3" exe="$4" rev version out tmp
  rev=$(git -C "$dir" rev-parse HEAD 2>/dev/null || true)
  if [[ -z "$rev" ]] || [[ -n "$(git -C "$dir" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    rev=dirty # no revision to trust: build every time (Go's build cache keeps that quick)
  fi
  out="$dir/.s3-cache-bin/$rev/$platform/$hook$exe"
  if [[ "$rev" != dirty && -x "$out" ]]; then
    echo "$out"
    return 0
  fi
  version=$(git -C "$dir" describe --tags --always --dirty 2>/dev/null || echo dev)
  mkdir -p "$(dirname "$out")"
  # Build to a temp name and rename: jobs starting at once never run a half-written binary.
  tmp="$out.tmp.$$"
  if ! (cd "$dir" && CGO_ENABLED=0 GOOS="${platform%_*}" GOARCH="${platform#*_}" go build -trimpath \
    -ldflags "-s -w -X github.com/s3-cache/s3-cache-buildkite-plugin/pkg/plugin.Version=$version" \
    -o "$tmp" "./cmd/$hook") >&2; then
    rm -f "$tmp"
    echo "s3-cache: go build of $hook failed in $dir" >&2
    return 1
  fi
  mv -f "$tmp" "$out"
  echo "$out"
}

# Prints the path of the binary for hook.
s3_cache_resolve() {
  local hook="$1" dir platform exe=""
  platform=$(s3_cache_platform) || return 1
  [[ "$platform" == windows_* ]] && exe=.exe
  if [[ -n "${S3_CACHE_BIN_DIR:-}" ]]; then
    if [[ -x "$S3_CACHE_BIN_DIR/$hook$exe" ]]; then
      echo "$S3_CACHE_BIN_DIR/$hook$exe"
      return 0
    fi
    echo "s3-cache: S3_CACHE_BIN_DIR is set but $S3_CACHE_BIN_DIR/$hook$exe is not an executable file" >&2
    return 1
  fi
  dir=$(s3_cache_plugin_dir)
  if command -v go >/dev/null 2>&1 && [[ -f "$dir/go.mod" ]]; then
    s3_cache_go_build "$hook" "$dir" "$platform" "$exe"
    return
  fi
  echo "s3-cache: no $hook binary for $platform: install Go on the agent, or put the binaries in a directory named by S3_CACHE_BIN_DIR" >&2
  return 1
}

# Runs the hook's binary and exports the variables it reports (BUILDKITE_PLUGIN_S3_CACHE_HIT, …).
s3_cache_run() {
  local hook="$1" bin env_file pid status=0 name value
  if ! bin=$(s3_cache_resolve "$hook"); then
    echo "+++ :rotating_light: s3-cache: cannot run the $hook hook"
    return 1
  fi
  # The binary creates this file (atomically) only when it has something to export, so a job
  # cancelled mid-hook leaves nothing behind.
  env_file="${TMPDIR:-/tmp}/s3-cache-env.$$.$RANDOM$RANDOM"
  # Run it in the background and wait, so that a SIGTERM (a cancelled job) reaches the binary and
  # the hook returns only once the binary has cleaned up (aborted its upload, removed staging).
  "$bin" --env-file "$env_file" &
  pid=$!
  trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
  while :; do
    wait "$pid" && status=0 || status=$?
    kill -0 "$pid" 2>/dev/null || break
  done
  trap - TERM INT
  if [[ -f "$env_file" ]]; then
    while IFS='=' read -r name value; do
      if [[ "$name" =~ ^BUILDKITE_PLUGIN_S3_CACHE_[A-Z0-9_]+$ ]]; then
        export "$name=$value"
      fi
    done <"$env_file"
    rm -f "$env_file"
  fi
  return "$status"
}
