#!/usr/bin/env bash
# Runs the whole test suite, installing what it needs, on a fresh Debian
# machine as root or with sudo. Stops at the first failing step, non-zero.
#
#   scripts/test.sh           gofmt, vet, staticcheck, tests, race, fuzz smoke
#   scripts/test.sh --quick   the same without race and fuzz
#
# Environment: FUZZTIME (default 10s) is the fuzz smoke time per target.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# Debian packages the tests look up on PATH, as "package:command".
PACKAGES=(nginx-light:nginx caddy:caddy redis-server:redis-server wrk:wrk chromium:chromium)
# The race detector needs cgo: a C compiler and the libc headers.
RACE_PACKAGES=(gcc:gcc libc6-dev:)
# Packages tested under the race detector. The race run costs several times a
# plain run; keep the whole of .ci/run well under CI's 90 minutes on 2 cores.
RACE_PKGS=(./internal/...)
# staticcheck 2026.2.2, the release that supports Go 1.26.
STATICCHECK_VERSION=v0.8.2
FUZZTIME=${FUZZTIME:-10s}
# Servers the tests start (pgrep -x pattern). A test stops each one with its
# children; one still running after the test step is a leak. Only processes
# working in this checkout count (go test runs each package's tests in its
# directory, and the servers inherit it), so servers that other work on the
# machine runs elsewhere are left alone.
SERVER_PROCS='nginx|caddy|redis-server|chromium|chrome|kube-apiserver|etcd|bao|kumo'

usage() {
	sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

quick=false
for arg in "$@"; do
	case $arg in
	--quick) quick=true ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		die "unknown argument: $arg"
		;;
	esac
done

started=$SECONDS
step=setup
step_started=$SECONDS
passed=()
tooldir=$(mktemp -d)

on_exit() {
	local rc=$?
	rm -rf "$tooldir"
	if ((rc != 0)); then
		printf '\nFAIL: scripts/test.sh stopped at step "%s" (exit %d) after %ds\n' \
			"$step" "$rc" $((SECONDS - started)) >&2
	fi
}
trap on_exit EXIT

begin() {
	step=$1
	step_started=$SECONDS
	log "$step"
}

finish() {
	passed+=("$step $((SECONDS - step_started))s")
}

server_pids() {
	local pid cwd root
	root=$(pwd -P)
	for pid in $(pgrep -x "$SERVER_PROCS" 2>/dev/null); do
		cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || continue
		[[ $cwd == "$root" || $cwd == "$root"/* ]] && echo "$pid"
	done | sort
}

# no_leaks runs "$@", then fails if a server process started while it ran is
# still there a few seconds later: it lists and kills them.
no_leaks() {
	local before leaked rc=0 i
	before=$(server_pids)
	"$@" || rc=$?
	for ((i = 0; i < 50; i++)); do
		leaked=$(comm -13 <(printf '%s\n' "$before") <(server_pids) | sed '/^$/d')
		[[ -z $leaked ]] && return "$rc"
		sleep 0.1 # processes that are already exiting get a moment
	done
	ps -o pid=,ppid=,args= -p "$(paste -sd, <<<"$leaked")" >&2 || true
	# shellcheck disable=SC2086 # one PID per word
	kill -9 $leaked 2>/dev/null || true
	die "$* left the processes above running (now killed): stop every process a test starts, with its children"
}

begin setup
setup_path
require_go
if $quick; then
	ensure_packages "${PACKAGES[@]}"
else
	ensure_packages "${PACKAGES[@]}" "${RACE_PACKAGES[@]}"
fi
go version
finish

begin gofmt
unformatted=$(gofmt -l .)
if [[ -n $unformatted ]]; then
	printf '%s\n' "$unformatted" >&2
	die "gofmt: the files above are not formatted (run gofmt -w on them)"
fi
finish

begin vet
go vet ./...
finish

begin staticcheck
if GOBIN=$tooldir go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"; then
	"$tooldir/staticcheck" ./...
	finish
else
	warn "could not fetch staticcheck $STATICCHECK_VERSION; skipping it"
	passed+=("staticcheck SKIPPED")
fi

# The tests' kube-apiserver and etcd are built from source (tools/kube) into
# the user cache, or $SEKISHO_KUBE_CACHE, once per machine: about 15 minutes
# cold on 2 cores, under a minute with a warm Go build cache, nothing once
# built. OpenBao (tools/openbao, $SEKISHO_OPENBAO_CACHE) likewise: 9 to 14
# CPU-minutes cold. A step of its own, so it is timed apart and never meets
# go test's per-package timeout.
begin "tool binaries"
go run ./internal/toolbin/all
finish

begin test
no_leaks go test -count=1 ./...
finish

if $quick; then
	log "--quick: skipping race and fuzz"
else
	begin race
	no_leaks go test -race -count=1 "${RACE_PKGS[@]}"
	finish

	begin fuzz
	# Every fuzz target as "dir name", so new targets are picked up on their own.
	mapfile -t targets < <(
		grep -rEo --include='*_test.go' --exclude-dir={.git,vendor,testdata} \
			'^func Fuzz[[:alnum:]_]*\([[:alnum:]_]+ \*testing\.F\)' . |
			sed -E 's#^(.*)/[^/]*_test\.go:func (Fuzz[[:alnum:]_]*)\(.*#\1 \2#' |
			sort -u
	)
	flaked=0
	for target in "${targets[@]}"; do
		read -r dir name <<<"$target"
		log "fuzz $name in $dir for $FUZZTIME"
		for attempt in 1 2; do
			out=$tooldir/fuzz.out
			rc=0
			no_leaks go test -run='^$' -fuzz="^$name\$" -fuzztime="$FUZZTIME" "$dir" 2>&1 | tee "$out" || rc=$?
			((rc == 0)) && break
			# Go 1.26's fuzz coordinator can fail a target with a bare
			# "context deadline exceeded" when -fuzztime ends while a worker
			# is busy (go.dev/issue/75804, fixed in Go 1.27): no input is
			# written and nothing reproduces. A real finding writes its
			# input ("Failing input written to") and fails at once.
			if grep -q 'Failing input written to' "$out" || ! grep -q '^    context deadline exceeded$' "$out"; then
				die "fuzz $name in $dir failed (see above)"
			fi
			if ((attempt == 2)); then
				warn "fuzz $name: the fuzzing engine's shutdown race (go.dev/issue/75804) twice, no failing input; counted as a flake"
				flaked=$((flaked + 1))
			else
				warn "fuzz $name: the fuzzing engine's shutdown race (go.dev/issue/75804), no failing input; running it again"
			fi
		done
	done
	step="fuzz (${#targets[@]} targets, $flaked engine flakes)"
	finish
fi

summary=$(printf '%s, ' "${passed[@]}")
printf '\nPASS: scripts/test.sh: %s; total %ds\n' "${summary%, }" $((SECONDS - started))
