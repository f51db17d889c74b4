# shellcheck shell=bash
# Shared helpers for scripts/test.sh and bench/load.sh. Source it; do not run it.
#
# Both scripts must work on a fresh Debian machine, as root or with sudo, so
# the Debian package logic lives here once.

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
	printf 'ERROR: %s\n' "$*" >&2
	exit 1
}

# setup_path puts the Debian sbin directories (nginx lives in /usr/sbin) and
# the usual Go install location on PATH, so tests and benches find them by name.
setup_path() {
	local d
	for d in /usr/local/go/bin /usr/local/sbin /usr/sbin /sbin; do
		case ":$PATH:" in
		*":$d:"*) ;;
		*) if [[ -d $d ]]; then PATH="$PATH:$d"; fi ;;
		esac
	done
	export PATH
}

# as_root runs a command as root, through sudo when we are not root already.
as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "need root to run '$*': run as root or install sudo"
	fi
}

# pkg_present tells whether one "package:command" entry is satisfied: the
# command is on PATH (any package may provide it, so nginx-full also counts
# for nginx), or, with no command given, the package itself is installed.
pkg_present() {
	local pkg=${1%%:*} cmd=${1#*:}
	if [[ -n $cmd ]]; then
		command -v "$cmd" >/dev/null
	else
		[[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) == installed ]]
	fi
}

# ensure_packages installs the Debian packages whose entries ("package:command"
# or "package:") are not yet satisfied. apt-get update runs only when something
# is missing. Services that the install starts are stopped and disabled: the
# tests and benches start their own instances on loopback high ports, and a
# system nginx or caddy on :80 (caddy's admin API on :2019) would get in the way.
ensure_packages() {
	local entry missing=()
	for entry in "$@"; do
		pkg_present "$entry" || missing+=("${entry%%:*}")
	done
	((${#missing[@]} == 0)) && return 0

	command -v apt-get >/dev/null ||
		die "missing packages (${missing[*]}) and no apt-get: install them by hand"
	log "installing Debian packages: ${missing[*]}"
	local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300)
	as_root "${apt[@]}" update ||
		die "apt-get update failed; cannot install ${missing[*]}"
	as_root "${apt[@]}" install --no-install-recommends "${missing[@]}" ||
		die "apt-get install ${missing[*]} failed"

	for entry in "$@"; do
		pkg_present "$entry" || die "apt-get installed ${entry%%:*} but it is still not usable (${entry#*:} not on PATH?)"
	done
	local pkg
	for pkg in "${missing[@]}"; do
		stop_service "$pkg"
	done
}

# stop_service stops and disables the system service a freshly installed
# package may have started. Debian names these services after the package,
# except nginx-*, whose service is nginx.
stop_service() {
	local svc=$1
	[[ $svc == nginx-* ]] && svc=nginx
	if [[ -d /run/systemd/system ]]; then
		systemctl cat "$svc.service" >/dev/null 2>&1 || return 0
		log "stopping and disabling system service $svc"
		as_root systemctl disable --now "$svc.service" >/dev/null 2>&1 ||
			warn "could not stop service $svc; it may hold its default port"
	elif [[ -x /etc/init.d/$svc ]]; then
		log "stopping and disabling system service $svc"
		as_root service "$svc" stop >/dev/null 2>&1 || true
		as_root update-rc.d "$svc" disable >/dev/null 2>&1 ||
			warn "could not disable service $svc at boot"
	fi
}

# require_go fails clearly when no Go toolchain can be found.
require_go() {
	command -v go >/dev/null ||
		die "go not found: install Go at /usr/local/go (or put it on PATH)"
}
