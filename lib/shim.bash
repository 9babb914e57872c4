#!/usr/bin/env bash
# Shared by hooks/pre-command and hooks/post-command: find the s3-cache binary for this platform
# and plugin version, run it, and export what it reports to the job's command.
#
# Resolution order (DESIGN §8):
#   1. $S3_CACHE_BIN_DIR/<hook>             an override directory (air-gapped agents, tests)
#   2. the binary cached on this agent for this plugin version
#      ($S3_CACHE_BINARY_CACHE, default ${XDG_CACHE_HOME:-~/.cache}/s3-cache/bin/<version>/<os>_<arch>/)
#   3. a download of this version's release asset, verified against the release's checksums.txt
#      (SHA-256), then cached; the version is the checkout's VERSION file or its tag, the
#      repository its git remote, the base URL $S3_CACHE_DOWNLOAD_URL for mirrors
#   4. a go build from the plugin checkout when it is not a released version and Go is installed,
#      cached inside the checkout per git revision
#   5. otherwise a clear error that says what to do
# A binary that fails verification is never run, and that fails the hook whatever soft-fail says.
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

# Prints the released version of the checkout (VERSION file, else an exact tag), or nothing.
s3_cache_version() {
  local dir="$1"
  if [[ -f "$dir/VERSION" ]]; then
    tr -d ' \t\r\n' <"$dir/VERSION"
  else
    git -C "$dir" describe --tags --exact-match HEAD 2>/dev/null || true
  fi
}

# Prints the release download base of the checkout's repository: https://host/owner/repo/releases/download
s3_cache_download_base() {
  local dir="$1" remote hostpath
  if [[ -n "${S3_CACHE_DOWNLOAD_URL:-}" ]]; then
    echo "${S3_CACHE_DOWNLOAD_URL%/}"
    return 0
  fi
  remote=$(git -C "$dir" remote get-url origin 2>/dev/null) || return 1
  remote=${remote%.git}
  case "$remote" in
    git@*:*)
      hostpath=${remote#git@}
      remote="https://${hostpath%%:*}/${hostpath#*:}"
      ;;
    ssh://git@*) remote="https://${remote#ssh://git@}" ;;
    http://* | https://*) ;;
    *) return 1 ;;
  esac
  echo "$remote/releases/download"
}

# Prints the agent's cache directory of release binaries for a version and platform.
s3_cache_binary_dir() {
  echo "${S3_CACHE_BINARY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/s3-cache/bin}/$1/$2"
}

s3_cache_sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

s3_cache_fetch() {
  local url="$1" out="$2"
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 --retry-delay 1 --retry-connrefused --connect-timeout 10 -o "$out" "$url"
  else
    wget -q --tries=3 --timeout=30 -O "$out" "$url"
  fi
}

# Downloads and verifies the release asset into the agent's cache; prints its path.
# Returns 1 when the release cannot be reached, 2 when verification fails (never run it).
s3_cache_download() {
  local hook="$1" platform="$2" exe="$3" version="$4" dir="$5" cache base asset tmp want got out
  cache=$(s3_cache_binary_dir "$version" "$platform")
  asset="${hook}_${platform}${exe}"
  out="$cache/$hook$exe"
  if ! base=$(s3_cache_download_base "$dir"); then
    echo "s3-cache: cannot tell where $version is released: the plugin checkout has no https or git@ remote; set S3_CACHE_DOWNLOAD_URL" >&2
    return 1
  fi
  mkdir -p "$cache"
  # A private temp dir beside the cache entry: concurrent jobs never see each other's partial
  # files, and the final rename is atomic.
  tmp=$(mktemp -d "$cache/.download.XXXXXX")
  if ! s3_cache_fetch "$base/$version/$asset" "$tmp/$asset"; then
    rm -rf "$tmp"
    echo "s3-cache: cannot download $base/$version/$asset" >&2
    return 1
  fi
  if ! s3_cache_fetch "$base/$version/checksums.txt" "$tmp/checksums.txt"; then
    rm -rf "$tmp"
    echo "s3-cache: refusing to run $asset: cannot download $base/$version/checksums.txt to verify it" >&2
    return 2
  fi
  want=$(awk -v a="$asset" '$2 == a || $2 == "*" a { print $1; exit }' "$tmp/checksums.txt")
  if [[ -z "$want" ]]; then
    rm -rf "$tmp"
    echo "s3-cache: refusing to run $asset: checksums.txt of $version has no entry for it" >&2
    return 2
  fi
  got=$(s3_cache_sha256 "$tmp/$asset")
  if [[ "$got" != "$want" ]]; then
    rm -rf "$tmp"
    echo "s3-cache: refusing to run $asset: its SHA-256 is $got but checksums.txt of $version says $want" >&2
    return 2
  fi
  chmod 755 "$tmp/$asset"
  mv -f "$tmp/$asset" "$out"
  rm -rf "$tmp"
  echo "$out"
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

# Prints the path of the binary for hook. Returns 1 when there is none, 2 when a download
# failed verification.
s3_cache_resolve() {
  local hook="$1" dir platform exe="" version cached
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
  version=$(s3_cache_version "$dir")
  if [[ -n "$version" ]]; then
    cached="$(s3_cache_binary_dir "$version" "$platform")/$hook$exe"
    if [[ -x "$cached" ]]; then
      echo "$cached"
      return 0
    fi
    s3_cache_download "$hook" "$platform" "$exe" "$version" "$dir"
    return
  fi
  if command -v go >/dev/null 2>&1 && [[ -f "$dir/go.mod" ]]; then
    s3_cache_go_build "$hook" "$dir" "$platform" "$exe"
    return
  fi
  echo "s3-cache: no $hook binary for $platform: this plugin checkout is not a released version (no VERSION file or tag) and Go is not installed; use a released version (s3-cache#vX.Y.Z), install Go, or put the binaries in a directory named by S3_CACHE_BIN_DIR" >&2
  return 1
}

# Runs the hook's binary and exports the variables it reports (BUILDKITE_PLUGIN_S3_CACHE_HIT, …).
s3_cache_run() {
  local hook="$1" bin env_file pid saved_traps status=0 name value
  bin=$(s3_cache_resolve "$hook") || status=$?
  if [[ "$status" -eq 2 ]]; then
    echo "+++ :rotating_light: s3-cache: the $hook binary failed verification and was not run"
    return 1
  elif [[ "$status" -ne 0 ]]; then
    if [[ "${BUILDKITE_PLUGIN_S3_CACHE_SOFT_FAIL:-true}" == false ]]; then
      echo "+++ :rotating_light: s3-cache: cannot run the $hook hook"
      return 1
    fi
    echo "^^^ +++"
    echo ":warning: s3-cache: cannot run the $hook hook; the build goes on without the cache (soft-fail is on)"
    [[ "$hook" == pre-command ]] && export BUILDKITE_PLUGIN_S3_CACHE_HIT=miss
    return 0
  fi

  # The binary creates this file (atomically) only when it has something to export, so a job
  # cancelled mid-hook leaves nothing behind.
  env_file="${TMPDIR:-/tmp}/s3-cache-env.$$.$RANDOM$RANDOM"
  # Run it in the background and wait, so that a SIGTERM (a cancelled job) reaches the binary and
  # the hook returns only once the binary has cleaned up (aborted its upload, removed staging).
  # The agent's wrapper sources this file: put its own traps back afterwards.
  saved_traps=$(trap -p TERM INT)
  "$bin" --env-file "$env_file" &
  pid=$!
  trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
  while :; do
    wait "$pid" && status=0 || status=$?
    kill -0 "$pid" 2>/dev/null || break
  done
  trap - TERM INT
  eval "$saved_traps"
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
