#!/usr/bin/env bash
# Shared by hooks/pre-command and hooks/post-command: find the s3-cache binary for this platform
# and plugin version, run it, and export what it reports to the job's command.
#
# Resolution order (docs/design.md#shim-resolution-and-trust):
#   1. $S3_CACHE_BIN_DIR/<hook>             an override directory (air-gapped agents, tests)
#   2. the binary cached on this agent for this plugin version and download source
#      ($S3_CACHE_BINARY_CACHE, default ${XDG_CACHE_HOME:-~/.cache}/s3-cache/bin, then
#      <source>/<version>/<os>_<arch>/ where <source> is the download base URL, escaped, so
#      a fork's build of the same tag is never run for the real plugin), if its SHA-256 still is
#      the one checksums.txt gave when it was downloaded (kept beside it, checked before each run)
#   3. a download of this version's release asset, verified against the release's checksums.txt
#      (SHA-256), then cached; the version is the checkout's VERSION file or its tag, the
#      repository its git remote, the base URL $S3_CACHE_DOWNLOAD_URL for mirrors. With no
#      absolute directory to cache it in (HOME and XDG_CACHE_HOME unset), nothing is downloaded.
#   4. a go build from the plugin checkout when it is not a released version and Go is installed,
#      cached inside the checkout per git revision
#   5. otherwise a clear error that says what to do
# A binary that fails verification is never run, and that fails the hook whatever soft-fail says.
# These functions are sourced by the agent's hook wrapper: they declare their variables local.
#
# Every hook of every job runs this file. Issue 10 gives a hook's start 50 ms, of which the
# agent's bash takes 10, and each program or subshell costs 5-10 ms on a small VM. So the
# every-run path (a cached, verified binary, or S3_CACHE_BIN_DIR) starts only the programs it
# cannot do without: stat (the verified note), mktemp (the private env directory), the binary,
# and rm; tests/shim.bats checks that, and scripts/bench-shim counts the forks. The functions on
# that path hand back their result in REPLY, which the caller copies at once, instead of printing
# it for the caller to capture with $(...), a subshell. (Not printf -v into a variable the caller
# names: a local of the same name in the function would take the value instead, silently.
# s3_cache_run declares REPLY local, so nothing leaks into the agent's wrapper.) Functions off
# that path (a download, a build, a failure) print their result, as usual.

# REPLY=the plugin checkout's absolute path, from this file's: <plugin>/lib/shim.bash, which the
# hooks source as <plugin>/hooks/../lib/shim.bash. `..` is taken lexically, as cd does.
s3_cache_plugin_dir() {
  local rest="${BASH_SOURCE[0]}" part dir=""
  [[ "$rest" == /* ]] || rest="$PWD/$rest"
  rest="${rest%/*}/.." # <plugin>/lib/..
  while [[ -n "$rest" ]]; do
    part=${rest%%/*}
    [[ "$rest" == */* ]] && rest=${rest#*/} || rest=""
    case "$part" in
      "" | .) ;;
      ..) dir=${dir%/*} ;;
      *) dir+="/$part" ;;
    esac
  done
  REPLY=${dir:-/}
}

# REPLY=<os>_<arch> as goreleaser names them, or fails for a platform without a release. Bash
# knows the system it was built for ($OSTYPE, $HOSTTYPE): that costs nothing, where uname is a
# program. Only a bash built for another system than the ones named here (a 32-bit bash on a
# 64-bit system) asks the kernel with uname, which is what decided before.
s3_cache_platform() {
  local os="" arch="" uname
  case "$OSTYPE" in
    linux*) os=linux ;;
    darwin*) os=darwin ;;
    msys* | cygwin*) os=windows ;; # Git Bash is msys
  esac
  case "$HOSTTYPE" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
  esac
  if [[ -z "$os" ]]; then
    uname=$(uname -s)
    case "$uname" in
      Linux) os=linux ;;
      Darwin) os=darwin ;;
      MINGW* | MSYS* | CYGWIN*) os=windows ;;
      *)
        echo "s3-cache: unsupported operating system '$uname': releases exist for Linux, macOS and Windows (Git Bash)" >&2
        return 1
        ;;
    esac
  fi
  if [[ -z "$arch" ]]; then
    uname=$(uname -m)
    case "$uname" in
      x86_64 | amd64) arch=amd64 ;;
      aarch64 | arm64) arch=arm64 ;;
      *)
        echo "s3-cache: unsupported architecture '$uname': releases exist for amd64 and arm64" >&2
        return 1
        ;;
    esac
  fi
  REPLY="${os}_${arch}"
}

# REPLY=the released version of the checkout (VERSION file, else an exact tag), or nothing.
s3_cache_version() {
  local dir="$1" version=""
  if [[ -f "$dir/VERSION" ]]; then
    read -r version <"$dir/VERSION" || true
    version=${version//[$' \t\r']/}
  else
    version=$(exec git -C "$dir" describe --tags --exact-match HEAD 2>/dev/null) || version=""
  fi
  REPLY=$version
}

# REPLY=the release download base of the checkout's repository: https://host/owner/repo/releases/download
s3_cache_download_base() {
  local dir="$1" remote hostpath
  if [[ -n "${S3_CACHE_DOWNLOAD_URL:-}" ]]; then
    REPLY=${S3_CACHE_DOWNLOAD_URL%/}
    return 0
  fi
  remote=$(exec git -C "$dir" remote get-url origin 2>/dev/null) || return 1
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
  REPLY="$remote/releases/download"
}

# REPLY=the root of the agent's cache of release binaries, or fails saying why there is none:
# it is never a relative path, which would put binaries wherever the hook happens to run.
s3_cache_binary_root() {
  local root="${S3_CACHE_BINARY_CACHE:-}"
  if [[ -n "$root" && "$root" != /* ]]; then
    echo "s3-cache: S3_CACHE_BINARY_CACHE=$root is not an absolute path; the plugin's binaries are not cached in a relative directory" >&2
    return 1
  elif [[ -z "$root" && "${XDG_CACHE_HOME:-}" == /* ]]; then
    root="${XDG_CACHE_HOME%/}/s3-cache/bin"
  elif [[ -z "$root" && "${HOME:-}" == /* ]]; then
    root="$HOME/.cache/s3-cache/bin"
  elif [[ -z "$root" ]]; then
    echo "s3-cache: no directory to cache the plugin's binary in: HOME and XDG_CACHE_HOME are unset (or not absolute paths); set HOME, or S3_CACHE_BINARY_CACHE to an absolute directory" >&2
    return 1
  fi
  REPLY=${root%/}
}

# REPLY=the cache directory of release binaries downloaded from base for a version and platform.
# Base is in the name, so that a fork's build of a version is never run for another source's:
# bytes other than letters, digits, . and - are written _<hex>, which keeps names apart (and
# readable) without running a hash program on every hook.
s3_cache_binary_dir() {
  local root="$1" base="$2" version="$3" platform="$4" source="" c i LC_ALL=C
  for ((i = 0; i < ${#base}; i++)); do
    c=${base:i:1}
    case "$c" in
      [A-Za-z0-9.-]) source+=$c ;;
      *) printf -v c '_%02x' "'$c" && source+=$c ;;
    esac
  done
  if [[ ${#source} -gt 200 ]]; then # too long for a file name: its digest (still one per source)
    source=sha256-$(printf '%s' "$base" | s3_cache_sha256) || return 1
  fi
  REPLY="$root/$source/$version/$platform"
}

# Succeeds if the cached binary's SHA-256 is the one recorded beside it at download. A binary
# whose bytes changed since is removed, with a warning, so that it is downloaded again.
# Hashing an 11 MB binary on every hook costs 15-70 ms of CPU, so a binary that passed is noted
# with its identity, size and times (<hook>.verified), and while those are unchanged it is not
# hashed again: any change to the file moves its ctime on, which only root can set back. The note
# is taken only once the ctime is 2 s in the past, so that a change in the same second shows.
# GNU stat is tried first but on macOS, whose stat is BSD's, so that each runs one stat; `exec`,
# as bash forks twice for a $(...) whose command has a redirection.
s3_cache_cached() {
  local bin="$1" want="" stamp="" verified="" got
  [[ -e "$bin" ]] || return 1
  [[ -f "$bin.sha256" ]] && read -r want <"$bin.sha256"
  if [[ "$OSTYPE" == darwin* ]]; then
    stamp=$(exec stat -f '%d %i %z %m %c' "$bin" 2>/dev/null) ||
      stamp=$(exec stat -c '%d %i %s %Y %Z' "$bin" 2>/dev/null) || stamp=""
  else
    stamp=$(exec stat -c '%d %i %s %Y %Z' "$bin" 2>/dev/null) ||
      stamp=$(exec stat -f '%d %i %z %m %c' "$bin" 2>/dev/null) || stamp=""
  fi
  [[ -f "$bin.verified" ]] && read -r verified <"$bin.verified"
  if [[ -n "$want" && -n "$stamp" && -x "$bin" && "$verified" == "$want $stamp" ]]; then
    return 0
  fi
  got=$(s3_cache_sha256 <"$bin")
  if [[ -n "$want" && "$got" == "$want" && -x "$bin" ]]; then
    if [[ -n "$stamp" && "${stamp##* }" -le $((${EPOCHSECONDS:-$(date +%s)} - 2)) ]]; then
      { echo "$want $stamp" >"$bin.verified.$$" && mv -f "$bin.verified.$$" "$bin.verified"; } 2>/dev/null || true
    fi
    return 0
  fi
  echo "s3-cache: the cached $bin has SHA-256 $got but was ${want:-(no record)} when it was downloaded and verified; removing it to download it again" >&2
  rm -f "$bin"
  return 1
}

# Prints the SHA-256 of stdin, with the fastest tool at hand: OpenSSL uses the CPU's SHA
# instructions (several times faster than coreutils here), which keeps the check of the cached
# binary before each run cheap. Its output format varies by version: take the digest from it.
s3_cache_sha256() {
  local out
  if command -v openssl >/dev/null 2>&1; then
    out=$(openssl dgst -sha256)
  elif command -v sha256sum >/dev/null 2>&1; then
    out=$(sha256sum)
  else
    out=$(shasum -a 256)
  fi
  [[ "$out" =~ ([0-9a-f]{64}) ]] || return 1
  echo "${BASH_REMATCH[1]}"
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
  local hook="$1" platform="$2" exe="$3" version="$4" base="$5" cache="$6" asset tmp want got out
  asset="${hook}_${platform}${exe}"
  out="$cache/$hook$exe"
  if ! mkdir -p "$cache"; then
    echo "s3-cache: cannot create the binary cache directory $cache" >&2
    return 1
  fi
  # A private temp dir beside the cache entry: concurrent jobs never see each other's partial
  # files, and the final rename is atomic.
  if ! tmp=$(mktemp -d "$cache/.download.XXXXXX") || [[ ! -d "$tmp" ]]; then
    echo "s3-cache: cannot create a temporary directory in the binary cache directory $cache" >&2
    return 1
  fi
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
  got=$(s3_cache_sha256 <"$tmp/$asset")
  if [[ "$got" != "$want" ]]; then
    rm -rf "$tmp"
    echo "s3-cache: refusing to run $asset: its SHA-256 is $got but checksums.txt of $version says $want" >&2
    return 2
  fi
  # The expected digest first: a job that finds the binary finds its record too.
  echo "$want" >"$tmp/sha256"
  if ! chmod 755 "$tmp/$asset" || ! mv -f "$tmp/sha256" "$out.sha256" || ! mv -f "$tmp/$asset" "$out"; then
    rm -rf "$tmp"
    echo "s3-cache: cannot put the verified $asset into the binary cache directory $cache" >&2
    return 1
  fi
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
  if ! mkdir -p "$(dirname "$out")"; then
    echo "s3-cache: cannot create $(dirname "$out") to build $hook into" >&2
    return 1
  fi
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

# s3_cache_resolve HOOK PLUGIN_DIR: REPLY=the path of the binary for hook. Returns 1 when there
# is none, 2 when a download failed verification.
s3_cache_resolve() {
  local hook="$1" dir="$2" platform exe="" version root base cache
  s3_cache_platform || return 1
  platform=$REPLY
  [[ "$platform" == windows_* ]] && exe=.exe
  if [[ -n "${S3_CACHE_BIN_DIR:-}" ]]; then
    if [[ -x "$S3_CACHE_BIN_DIR/$hook$exe" ]]; then
      REPLY="$S3_CACHE_BIN_DIR/$hook$exe"
      return 0
    fi
    echo "s3-cache: S3_CACHE_BIN_DIR is set but $S3_CACHE_BIN_DIR/$hook$exe is not an executable file" >&2
    return 1
  fi
  s3_cache_version "$dir"
  version=$REPLY
  if [[ -n "$version" ]]; then
    s3_cache_binary_root || return 1
    root=$REPLY
    if ! s3_cache_download_base "$dir"; then
      echo "s3-cache: cannot tell where $version is released: the plugin checkout has no https or git@ remote; set S3_CACHE_DOWNLOAD_URL" >&2
      return 1
    fi
    base=$REPLY
    s3_cache_binary_dir "$root" "$base" "$version" "$platform" || return 1
    cache=$REPLY
    if s3_cache_cached "$cache/$hook$exe"; then
      REPLY="$cache/$hook$exe"
      return 0
    fi
    REPLY=$(s3_cache_download "$hook" "$platform" "$exe" "$version" "$base" "$cache")
    return
  fi
  if command -v go >/dev/null 2>&1 && [[ -f "$dir/go.mod" ]]; then
    REPLY=$(s3_cache_go_build "$hook" "$dir" "$platform" "$exe")
    return
  fi
  echo "s3-cache: no $hook binary for $platform: this plugin checkout is not a released version (no VERSION file or tag) and Go is not installed; use a released version (s3-cache/s3-cache#vX.Y.Z), install Go, or put the binaries in a directory named by S3_CACHE_BIN_DIR" >&2
  return 1
}

# s3_cache_bool KEY NAME DEFAULT prints true or false: the boolean key KEY (variable
# BUILDKITE_PLUGIN_S3_CACHE_<NAME>) as the binary reads it (Go's strconv.ParseBool; DEFAULT when
# unset). Any other value is a configuration error, as it is for the binary.
s3_cache_bool() {
  local key="$1" var="BUILDKITE_PLUGIN_S3_CACHE_$2" default="$3"
  case "${!var-$default}" in
    1 | t | T | TRUE | true | True) echo true ;;
    0 | f | F | FALSE | false | False) echo false ;;
    *)
      echo "s3-cache: invalid configuration: $key: invalid value \"${!var}\": want true or false" >&2
      return 1
      ;;
  esac
}

# Prints true or false: soft-fail as the binary reads it (true when unset).
s3_cache_soft_fail() { s3_cache_bool soft-fail SOFT_FAIL true; }

# Says that the hook's binary cannot run; fails unless soft-fail is on. A pre-command that cannot
# run is a miss, which fail-on-cache-miss fails whatever soft-fail says.
s3_cache_cannot_run() {
  local hook="$1" soft_fail fail_on_miss
  if [[ "$hook" == pre-command ]]; then
    if ! fail_on_miss=$(s3_cache_bool fail-on-cache-miss FAIL_ON_CACHE_MISS false 2>&1); then
      echo "+++ :rotating_light: $fail_on_miss"
      return 1
    elif [[ "$fail_on_miss" == true ]]; then
      echo "+++ :rotating_light: s3-cache: cannot run the pre-command hook: a cache miss, and fail-on-cache-miss is on"
      return 1
    fi
  fi
  if ! soft_fail=$(s3_cache_soft_fail 2>&1); then
    echo "+++ :rotating_light: $soft_fail"
    return 1
  elif [[ "$soft_fail" == false ]]; then
    echo "+++ :rotating_light: s3-cache: cannot run the $hook hook"
    return 1
  fi
  echo "^^^ +++"
  echo ":warning: s3-cache: cannot run the $hook hook; the build goes on without the cache (soft-fail is on)"
  [[ "$hook" == pre-command ]] && export BUILDKITE_PLUGIN_S3_CACHE_HIT=miss
  return 0
}

# Runs the hook's binary and exports the variables it reports (BUILDKITE_PLUGIN_S3_CACHE_HIT, …).
s3_cache_run() {
  local hook="$1" REPLY plugin_dir bin bin_cache="" env_dir env_file pid="" cancelled="" saved_traps="" status=0 name value
  s3_cache_plugin_dir
  plugin_dir=$REPLY
  REPLY=""
  s3_cache_resolve "$hook" "$plugin_dir" || status=$?
  bin=$REPLY
  if [[ "$status" -eq 2 ]]; then
    echo "+++ :rotating_light: s3-cache: the $hook binary failed verification and was not run"
    return 1
  elif [[ "$status" -ne 0 ]]; then
    s3_cache_cannot_run "$hook"
    return
  fi
  # The binary refuses a cache path over the directory it was cached in, or over the plugin's
  # checkout: a restore there would replace the binaries and scripts later hooks run.
  if s3_cache_binary_root 2>/dev/null && [[ "$bin" == "$REPLY"/* ]]; then
    bin_cache=$REPLY
  fi

  # The binary creates the env file (atomically) unless it was cancelled, so a job cancelled
  # mid-hook leaves nothing behind. It goes in a directory of this user's that no one
  # else can write to: a name in a shared temp directory can be taken first by another user.
  if ! env_dir=$(mktemp -d "${TMPDIR:-/tmp}/s3-cache-env.XXXXXX") || [[ ! -d "$env_dir" ]]; then
    echo "s3-cache: cannot create a temporary directory in ${TMPDIR:-/tmp}" >&2
    s3_cache_cannot_run "$hook"
    return
  fi
  env_file="$env_dir/env"
  # Run it in the background and wait, so that a SIGTERM (a cancelled job) reaches the binary and
  # the hook returns only once the binary has cleaned up (aborted its upload, removed staging).
  # The trap is set before the binary starts, and never fails: the agent signals the whole process
  # group, so the binary may be gone already, and a failing command in a trap ends the hook under
  # set -e before its clean-up. The agent's wrapper sources this file: its own traps go back last.
  # They are saved through a file in the private directory, as $(trap -p) would fork a subshell.
  if trap -p TERM INT 2>/dev/null >"$env_dir/traps"; then
    IFS= read -r -d '' saved_traps <"$env_dir/traps" || true # -d '': the whole file, to its end
  else
    saved_traps=$(trap -p TERM INT)
  fi
  trap 'cancelled=1; [[ -z "$pid" ]] || kill -TERM "$pid" 2>/dev/null || true' TERM INT
  S3_CACHE_BINARY_CACHE_DIR="$bin_cache" S3_CACHE_PLUGIN_DIR="$plugin_dir" "$bin" --env-file "$env_file" &
  pid=$!
  [[ -z "$cancelled" ]] || kill -TERM "$pid" 2>/dev/null || true
  while :; do
    wait "$pid" && status=0 || status=$?
    kill -0 "$pid" 2>/dev/null || break
  done
  trap '' TERM INT # the clean-up below is short: let nothing cut it
  if [[ -L "$env_file" || (-e "$env_file" && (! -f "$env_file" || ! -O "$env_file")) ]]; then
    echo ":warning: s3-cache: ignoring $env_file: it is not a regular file of this user's"
  elif [[ -f "$env_file" ]]; then
    while IFS='=' read -r name value; do
      if [[ "$name" =~ ^BUILDKITE_PLUGIN_S3_CACHE_[A-Z0-9_]+$ ]]; then
        export "$name=$value"
      fi
    done <"$env_file"
  fi
  rm -rf "$env_dir"
  trap - TERM INT
  eval "$saved_traps"
  return "$status"
}
