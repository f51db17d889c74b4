#!/usr/bin/env bash
# Loopback load comparison: sekisho against Debian's nginx as a plain reverse
# proxy and against its Go peers (Caddy's reverse_proxy, oauth2-proxy with the
# same JWT), all in front of the same tiny nginx upstream, driven by wrk, in
# one run; prints one table with ratios to nginx and to each peer.
#
#   bench/load.sh [SCENARIO...]     default: every scenario, in the order below
#   bench/load.sh --smoke [SCENARIO...]   1 s runs, 200 tokens and connections
#
# Environment (defaults in brackets; --smoke changes the ones marked *):
#   BENCH_DURATION [10s*]  BENCH_WARMUP [3s*]  BENCH_THREADS [2]
#   BENCH_CONNECTIONS [64]  BENCH_GOGC [100]
#   BENCH_ROUNDS [1]  runs everything that many times, interleaved; the table has the means
#   BENCH_DISTINCT_TOKENS [20000*]  tokens the jwt_distinct scenario cycles through
#   BENCH_IDLE_CONNS [10000*]       connections the idle scenario holds open
#   BENCH_TOOLS [~/.cache/sekisho]  where oauth2-proxy is built, once per machine
#   BENCH_PORT_UPSTREAM [18081] BENCH_PORT_NGINX [18082] BENCH_PORT_SEKISHO [18080]
#   BENCH_PORT_ADMIN [19090] BENCH_PORT_DECISION [18083] BENCH_PORT_FRONT [18084]
#   BENCH_PORT_ISSUER [18085] BENCH_PORT_CADDY [18086] BENCH_PORT_OAUTH2PROXY [18087]
#   BENCH_KEEP=1 keeps the temp dir (configs, logs, wrk output) for a look afterwards.
#
# Everything listens on 127.0.0.1, lives in one temp dir and is killed on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

smoke=0
scenarios=()
for arg in "$@"; do
	case $arg in
	--smoke) smoke=1 ;;
	*) scenarios+=("$arg") ;;
	esac
done
if ((smoke)); then
	DURATION=${BENCH_DURATION:-1s}
	WARMUP=${BENCH_WARMUP:-1s}
	DISTINCT=${BENCH_DISTINCT_TOKENS:-200}
	IDLE_CONNS=${BENCH_IDLE_CONNS:-200}
else
	DURATION=${BENCH_DURATION:-10s}
	WARMUP=${BENCH_WARMUP:-3s}
	DISTINCT=${BENCH_DISTINCT_TOKENS:-20000}
	IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
fi
THREADS=${BENCH_THREADS:-2}
ROUNDS=${BENCH_ROUNDS:-1}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
PORT_UPSTREAM=${BENCH_PORT_UPSTREAM:-18081}
PORT_NGINX=${BENCH_PORT_NGINX:-18082}
PORT_SEKISHO=${BENCH_PORT_SEKISHO:-18080}
PORT_ADMIN=${BENCH_PORT_ADMIN:-19090}
PORT_DECISION=${BENCH_PORT_DECISION:-18083}
PORT_FRONT=${BENCH_PORT_FRONT:-18084}
PORT_ISSUER=${BENCH_PORT_ISSUER:-18085}
PORT_CADDY=${BENCH_PORT_CADDY:-18086}
PORT_OAUTH2PROXY=${BENCH_PORT_OAUTH2PROXY:-18087}
OAUTH2_PROXY_VERSION=v7.15.6
READY_TIMEOUT=30 # seconds to wait for a server to answer
STOP_TIMEOUT=10  # seconds a server gets to exit on SIGTERM before SIGKILL

for d in "$DURATION" "$WARMUP"; do
	[[ $d =~ ^[0-9]+s?$ ]] || die "durations are whole seconds like 10s, not '$d'"
done
for n in "$DISTINCT" "$IDLE_CONNS" "$THREADS" "$CONNECTIONS" "$ROUNDS"; do
	[[ $n =~ ^[1-9][0-9]*$ ]] || die "counts are positive whole numbers, not '$n'"
done

# ---------------------------------------------------------------------------
# Scenarios. Each is a function scenario_NAME that sets, before its server
# starts:
#   SC_NAME     the row's name in the table
#   SC_KIND     which peers the row is compared with: base (the nginx proxy
#               row), gw (a gateway in front of the upstream: Caddy), jwt (a
#               gateway checking the bench JWT: Caddy and oauth2-proxy), auth
#               (nginx auth_request to an authorization service: oauth2-proxy's
#               /oauth2/auth)
#   SC_SEKISHO  1 to run sekisho with SC_TOP (extra top-level YAML) and
#               SC_POLICY (the bench route's policy, YAML); else the function
#               starts its own server with spawn and sets SC_PIDS
#   SC_PORT     where wrk sends (default: sekisho's port)
#   SC_PIDS     the processes whose CPU time the row counts (with their child
#               processes; default: sekisho): the server under test, never wrk
#               nor the shared upstream
#   SC_HEADERS  extra wrk arguments, e.g. (-H "Authorization: Bearer $token")
#   SC_TOKENS   a file of bearer tokens, one per line, that wrk cycles through
#               (each thread from its own offset)
# scenario_NAME_ready, if defined, runs once the server answers (sign in,
# start an nginx in front); scenario_NAME_measure, if defined, replaces the
# usual warm-up + measured wrk run.
# ---------------------------------------------------------------------------
all_scenarios=(caddy plain jwt jwt_distinct oauth2proxy session authrequest authrequest_jwt oauth2proxy_auth rotation idle)

# scenario_caddy: Debian's Caddy as a reverse proxy, the plain Go peer. It
# keeps up to 64 idle upstream connections, like the nginx baseline.
scenario_caddy() {
	mkdir -p "$work/caddy"
	cat >"$work/caddy/Caddyfile" <<-EOF
		{
			admin off
			auto_https off
			storage file_system $work/caddy/data
		}
		http://127.0.0.1:$PORT_CADDY {
			reverse_proxy 127.0.0.1:$PORT_UPSTREAM {
				transport http {
					keepalive_idle_conns 64
					keepalive_idle_conns_per_host 64
				}
			}
		}
	EOF
	local version
	version=$(caddy version | awk '{print $1; exit}')
	HOME=$work/caddy XDG_DATA_HOME=$work/caddy/data XDG_CONFIG_HOME=$work/caddy/config GOMAXPROCS=2 \
		spawn "$work/caddy/caddy.log" caddy run --config "$work/caddy/Caddyfile" --adapter caddyfile
	wait_http "http://127.0.0.1:$PORT_CADDY/" "$started_pid" "caddy" "$work/caddy/caddy.log"
	SC_NAME="Caddy $version reverse_proxy" SC_KIND=gw SC_PORT=$PORT_CADDY SC_PIDS=("$started_pid")
}

scenario_plain() {
	SC_SEKISHO=1 SC_KIND=gw
	SC_POLICY="public: true"
}

# jwt_config: the JWT + policy sekisho config of the jwt scenarios: the bench
# issuer's RS256 tokens, a deny rule with CEL and two allow rules.
jwt_config() {
	SC_SEKISHO=1
	SC_TOP="jwt: [{issuer: \"http://127.0.0.1:$PORT_ISSUER\", audiences: [bench], claims: {username: email}}]"
	SC_POLICY=$'allow: [{groups: [admin]}, {domains: [example.com]}]\n    deny: [{when: "!identity.mfa"}]'
}

scenario_jwt() {
	jwt_config
	SC_NAME="sekisho JWT + policy" SC_KIND=jwt SC_TOKENS=$work/token.jwt
}

# scenario_jwt_distinct: the jwt scenario, but wrk cycles through
# $DISTINCT distinct tokens (distinct users), so a token cache smaller than
# that misses and verifies the signature again.
scenario_jwt_distinct() {
	jwt_config
	SC_NAME="sekisho JWT, $DISTINCT distinct tokens" SC_KIND=jwt SC_TOKENS=$work/tokens.txt
}

# scenario_jwt_distinct_measure says when the warm-up did not send every
# token once: then the measured run includes first verifications.
scenario_jwt_distinct_measure() {
	measure "$SC_NAME" "$WARMUP"
	add_row
	if ((m_warm_requests < DISTINCT)); then
		notes+=("${round_tag}The distinct-token warm-up sent $m_warm_requests requests, fewer than the $DISTINCT tokens: the measured run includes first verifications (raise BENCH_WARMUP).")
	fi
}

# scenario_oauth2proxy: oauth2-proxy in front of the same upstream, letting
# through requests whose bearer JWT from the bench issuer verifies (its
# OIDC provider is the same issuer; nobody signs in through it).
scenario_oauth2proxy() {
	start_oauth2_proxy
	SC_NAME="oauth2-proxy $OAUTH2_PROXY_VERSION JWT bearer" SC_KIND=jwt SC_PORT=$PORT_OAUTH2PROXY
	SC_PIDS=("$oauth2_proxy_pid") SC_TOKENS=$work/token.jwt
}

# scenario_session: a browser session from the built-in provider (cookie
# store): every request carries the session cookie.
scenario_session() {
	SC_SEKISHO=1 SC_KIND=gw
	SC_TOP='providers: [{name: dev, builtin: {users: [{email: bench@example.com, password: bench, groups: [admin]}]}}]'
	SC_POLICY=$'allow: [{groups: [admin]}, {domains: [example.com]}]\n    deny: [{when: "identity.kind != \'user\'"}]'
}

# scenario_session_ready signs in with curl (as a browser would) and hands
# the session cookie to wrk.
scenario_session_ready() {
	local base="http://127.0.0.1:$PORT_SEKISHO" jar="$work/cookies.txt" form action id csrf
	form=$(curl -fsS -c "$jar" -b "$jar" -L -H 'Accept: text/html' "$base/") || die "session: could not reach the sign-in form"
	action=$(sed -n 's/.*<form method="post" action="\([^"]*\)".*/\1/p' <<<"$form" | head -1 | sed 's/&amp;/\&/g')
	id=$(sed -n 's/.*name="id" value="\([^"]*\)".*/\1/p' <<<"$form" | head -1)
	csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$form" | head -1)
	[[ -n $action && -n $id && -n $csrf ]] || die "session: the sign-in form was not recognized"
	curl -fsS -o /dev/null -c "$jar" -b "$jar" -L -H 'Accept: text/html' \
		--data-urlencode "id=$id" --data-urlencode "csrf=$csrf" \
		--data-urlencode "email=bench@example.com" --data-urlencode "password=bench" \
		"$base$action" || die "session: sign-in failed"
	local cookie
	cookie=$(awk -F'\t' '$6 ~ /^_sekisho(_[0-9]+)?$/ { printf "%s%s=%s", sep, $6, $7; sep="; " }' "$jar")
	[[ -n $cookie ]] || die "session: no session cookie after sign-in"
	SC_HEADERS=(-H "Cookie: $cookie")
}

# scenario_authrequest: a different topology. nginx stays the proxy and asks
# sekisho's decision service (auth_request to /nginx) about every request,
# with an API token; compare with the nginx row (nginx alone, no auth).
scenario_authrequest() {
	local token=skt_bench-load-token-0123456789abcdefghijkl
	printf -- '- name: bench\n  hash: %s\n  groups: [bench]\n' \
		"sha256:$(printf %s "$token" | sha256sum | cut -d' ' -f1)" >"$work/tokens.yaml"
	SC_SEKISHO=1 SC_KIND=auth SC_NAME="nginx auth_request → sekisho (API token)"
	SC_TOP="api_tokens: {file: $work/tokens.yaml}"$'\n'"decision: {listen: \"127.0.0.1:$PORT_DECISION\"}"
	SC_POLICY='allow: [{tokens: [bench]}]'
	SC_HEADERS=(-H "Authorization: Bearer $token")
}

scenario_authrequest_ready() {
	start_front "$PORT_DECISION" /nginx x_forwarded_user
}

# scenario_authrequest_jwt: the same topology with the bench JWT and the
# jwt scenario's policy: what oauth2proxy_auth is compared with.
scenario_authrequest_jwt() {
	jwt_config
	SC_TOP+=$'\n'"decision: {listen: \"127.0.0.1:$PORT_DECISION\"}"
	SC_KIND=auth SC_NAME="nginx auth_request → sekisho (JWT + policy)"
	SC_HEADERS=(-H "Authorization: Bearer $(cat "$work/token.jwt")")
}

scenario_authrequest_jwt_ready() {
	start_front "$PORT_DECISION" /nginx x_forwarded_user
}

# scenario_oauth2proxy_auth: nginx auth_request to oauth2-proxy's
# /oauth2/auth with the bench JWT.
scenario_oauth2proxy_auth() {
	start_oauth2_proxy
	start_front "$PORT_OAUTH2PROXY" /oauth2/auth x_auth_request_user
	SC_PIDS+=("$oauth2_proxy_pid")
	SC_KIND=auth SC_NAME="nginx auth_request → oauth2-proxy (JWT)"
	SC_HEADERS=(-H "Authorization: Bearer $(cat "$work/token.jwt")")
}

# scenario_rotation: the jwt scenario measured twice back to back on one
# sekisho: steady, then with the issuer's signing key rotated half-way
# through (a new kid published, wrk switching to a token signed with it
# within 200 requests per thread). A refused request is a non-2xx answer.
scenario_rotation() {
	jwt_config
	cp "$work/token.jwt" "$work/rotation.jwt"
	SC_NAME="sekisho JWT, key rotated mid-run" SC_KIND=jwt SC_TOKENS=$work/rotation.jwt SC_RELOAD=1
}

scenario_rotation_measure() {
	measure "sekisho JWT, steady (before the rotation)" "$WARMUP"
	local steady_p999=$m_p999 steady_refused=$m_refused steady_requests=$m_requests half
	half=$(awk -v d="${DURATION%s}" 'BEGIN { print d / 2 }')
	(
		sleep "$half" # when to rotate, not a wait for anything
		curl -fsS -X POST -o "$work/rotation.jwt.tmp" "http://127.0.0.1:$PORT_ISSUER/rotate" &&
			mv "$work/rotation.jwt.tmp" "$work/rotation.jwt"
	) &
	local rotator=$!
	SC_ALLOW_REFUSED=1 measure "$SC_NAME" 0
	wait "$rotator" || die "rotation: the issuer did not rotate its key (see $work/jwtissuer.log)"
	((m_switched)) || die "rotation: wrk never sent the token signed with the new key"
	add_row
	notes+=("${round_tag}JWKS rotation under load: p99.9 $(ms "$steady_p999") ms steady, $(ms "$m_p999") ms across the rotation ($(ratio "$m_p999" "$steady_p999")×); refused $m_refused of $m_requests requests across it ($steady_refused of $steady_requests before).")
}

# scenario_idle: memory per idle keep-alive connection, sekisho (plain
# route) then an nginx proxy with one worker (its RSS is the worker's),
# each holding $IDLE_CONNS connections opened by bench/idleconns.
scenario_idle() {
	scenario_plain
	# bench/idleconns -gc has sekisho collect garbage before it reads the
	# memory (through the admin port's pprof), so the figure is what the
	# idle connections hold, not the garbage of their first requests.
	SC_PPROF=true
}

scenario_idle_measure() {
	local out
	local sekisho_rss
	out=$(idleconns "127.0.0.1:$PORT_SEKISHO" "$sekisho_pid" sekisho -admin "127.0.0.1:$PORT_ADMIN" -gc) || die "idle: no figure for sekisho"
	sekisho_rss=$(field rss_kb_per_conn "$out")
	notes+=("Idle keep-alive connections, sekisho: $(field idle_conns "$out") connections, $sekisho_rss KB RSS and $(field heap_kb_per_conn "$out") KB Go heap per connection.")
	stop "$sekisho_pid"
	start_nginx idle "
worker_processes 1;
worker_rlimit_nofile $((IDLE_CONNS + 1024));
events { worker_connections $((IDLE_CONNS + 512)); }
http {
$(http_common idle)
	upstream backend { server 127.0.0.1:$PORT_UPSTREAM; keepalive 64; }
	server {
		listen 127.0.0.1:$PORT_NGINX;
		location / {
			proxy_pass http://backend;
			proxy_http_version 1.1;
			proxy_set_header Connection \"\";
		}
	}
}"
	local master=$started_pid worker
	wait_http "http://127.0.0.1:$PORT_NGINX/" "$master" "idle nginx" "$work/idle/error.log"
	worker=$(children "$master")
	[[ $worker =~ ^[0-9]+$ ]] || die "idle: expected one nginx worker under $master, found '$worker'"
	# nginx's figure is the baseline; without it sekisho's still stands.
	if ! out=$(idleconns "127.0.0.1:$PORT_NGINX" "$worker" nginx); then
		notes+=("Idle keep-alive connections, nginx: no figure, bench/idleconns failed (see $work/idleconns-nginx.log with BENCH_KEEP=1).")
		return 0
	fi
	notes+=("Idle keep-alive connections, nginx (one worker): $(field idle_conns "$out") connections, $(field rss_kb_per_conn "$out") KB RSS per connection; sekisho/nginx: $(ratio "$sekisho_rss" "$(field rss_kb_per_conn "$out")")×.")
}

# field KEY LINE is the value of KEY=VALUE in LINE ("?" when absent).
field() {
	local kv
	for kv in $2; do
		if [[ ${kv%%=*} == "$1" ]]; then
			printf '%s' "${kv#*=}"
			return 0
		fi
	done
	printf '?'
}

# idleconns ADDR PID NAME [FLAG...] holds $IDLE_CONNS connections to ADDR and
# prints the one line bench/idleconns reports about PID's memory; it fails,
# with a warning, when bench/idleconns does. FLAGs go to bench/idleconns.
idleconns() {
	local addr=$1 pid=$2 name=$3 out
	shift 3
	log "idle: $IDLE_CONNS keep-alive connections to $name ($addr)"
	out=$(timeout 600 "$work/idleconns" -addr "$addr" -n "$IDLE_CONNS" -pid "$pid" "$@" 2>"$work/idleconns-$name.log") || {
		tail -n 20 "$work/idleconns-$name.log" >&2 || true
		warn "idle: bench/idleconns failed against $name (log above)"
		return 1
	}
	out=$(grep -E '^idle_conns=' <<<"$out" | tail -1)
	[[ -n $out ]] || {
		warn "idle: bench/idleconns printed no 'idle_conns=' line against $name"
		return 1
	}
	printf '%s\n' "$out"
}

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
	printf '\nScenarios: %s\n' "${all_scenarios[*]}"
}

for sc in "${scenarios[@]}"; do
	case $sc in
	-h | --help)
		usage
		exit 0
		;;
	esac
	[[ " ${all_scenarios[*]} " == *" $sc "* ]] || {
		usage >&2
		die "unknown scenario: $sc"
	}
done
((${#scenarios[@]})) || scenarios=("${all_scenarios[@]}")

# needs SCENARIO... tells whether any selected scenario is one of those.
needs() {
	local s
	for s in "$@"; do
		[[ " ${scenarios[*]} " == *" $s "* ]] && return 0
	done
	return 1
}

setup_path
require_go
packages=(nginx-light:nginx wrk:wrk curl:curl)
needs caddy && packages+=(caddy:caddy)
ensure_packages "${packages[@]}"

work=$(mktemp -d -t sekisho-bench.XXXXXX)
# nginx workers run as nobody when started as root and must reach their files.
chmod 755 "$work"
pids=()    # every process still running, for cleanup
sc_pids=() # the processes the current scenario started
notes=()
results=()
finished=0

# spawn LOG CMD... starts CMD in the background with its output in LOG.
spawn() {
	local logf=$1
	shift
	"$@" >"$logf" 2>&1 &
	started_pid=$!
	pids+=("$started_pid")
	sc_pids+=("$started_pid")
}

# stop sends SIGTERM and reaps the process, with SIGKILL after STOP_TIMEOUT
# so a server that hangs in its drain cannot hang the bench. The pid leaves
# pids, so cleanup never signals a reused pid.
stop() {
	local pid=$1 watchdog p rest=()
	for p in "${pids[@]}"; do
		[[ $p == "$pid" ]] || rest+=("$p")
	done
	pids=("${rest[@]}")
	kill "$pid" 2>/dev/null || return 0
	(
		sleep "$STOP_TIMEOUT" &
		trap 'kill $!; exit 0' TERM
		wait $!
		kill -KILL "$pid"
	) >/dev/null 2>&1 &
	watchdog=$!
	wait "$pid" 2>/dev/null || true
	kill "$watchdog" 2>/dev/null || true
	wait "$watchdog" 2>/dev/null || true
}

# stop_scenario stops what the current scenario started, newest first.
stop_scenario() {
	local i
	for ((i = ${#sc_pids[@]} - 1; i >= 0; i--)); do
		stop "${sc_pids[i]}"
	done
	sc_pids=()
}

cleanup() {
	# Only the script itself tears the run down, never a subshell that
	# happens to run the EXIT trap on its way out.
	[[ $BASHPID == "$$" ]] || return 0
	# A run that stopped early still shows what it measured.
	if ((!finished && ${#results[@]})); then
		print_table "PARTIAL (the run stopped early): sekisho and its peers" || true
	fi
	while ((${#pids[@]})); do
		stop "${pids[0]}"
	done
	if [[ ${BENCH_KEEP:-} == 1 ]]; then
		log "kept $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# port_free fails when something already answers on 127.0.0.1:PORT.
port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_http polls URL until it answers 200, the process PID dies, or the
# deadline (TIMEOUT, default READY_TIMEOUT seconds) passes. Polling is the
# only way to learn that another process is up.
wait_http() {
	local url=$1 pid=$2 name=$3 log=$4 deadline=$((SECONDS + ${5:-$READY_TIMEOUT}))
	until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$log" >&2 || true
			die "$name exited before it answered on $url (log above)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 20 "$log" >&2 || true
			die "$name did not answer 200 on $url within ${5:-$READY_TIMEOUT}s (log above)"
		fi
		sleep 0.1
	done
}

# start_nginx NAME CONF_BODY starts a foreground nginx with its own prefix.
start_nginx() {
	local name=$1 body=$2 dir=$work/$1
	mkdir -p "$dir"
	cat >"$dir/nginx.conf" <<-EOF
		daemon off;
		pid $dir/nginx.pid;
		error_log $dir/error.log warn;
		$body
	EOF
	nginx -t -q -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" ||
		die "$name: nginx rejected its config $dir/nginx.conf"
	spawn "$dir/stdout.log" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
}

# http_common is the http{} preamble every nginx instance shares: no logs,
# temp files inside the work dir, and client keep-alive as unbounded as Go's.
http_common() {
	local dir=$work/$1
	cat <<-EOF
		access_log off;
		default_type text/plain;
		keepalive_requests 1000000;
		keepalive_timeout 75s;
		client_body_temp_path $dir/body;
		proxy_temp_path $dir/proxy;
		fastcgi_temp_path $dir/fastcgi;
		uwsgi_temp_path $dir/uwsgi;
		scgi_temp_path $dir/scgi;
	EOF
}

# start_front PORT PATH HEADER starts the nginx of the auth_request
# scenarios on PORT_FRONT: it asks the service on 127.0.0.1:PORT at PATH
# about every request (the client's headers, no body) and passes the user
# its answer names (response header HEADER, in nginx's spelling:
# x_forwarded_user) to the upstream. It becomes the row's
# port, and its CPU counts with the service's.
start_front() {
	local port=$1 path=$2 user=$3
	port_free "$PORT_FRONT" || die "127.0.0.1:$PORT_FRONT is in use (BENCH_PORT_FRONT)"
	start_nginx front "
worker_processes 2;
events { worker_connections 4096; }
http {
$(http_common front)
	upstream app { server 127.0.0.1:$PORT_UPSTREAM; keepalive 64; }
	upstream decide { server 127.0.0.1:$port; keepalive 64; }
	server {
		listen 127.0.0.1:$PORT_FRONT;
		location / {
			auth_request /_auth;
			auth_request_set \$user \$upstream_http_$user;
			proxy_set_header X-Forwarded-User \$user;
			proxy_set_header Authorization \"\";
			proxy_pass http://app;
			proxy_http_version 1.1;
			proxy_set_header Connection \"\";
		}
		location = /_auth {
			internal;
			proxy_pass http://decide$path;
			proxy_http_version 1.1;
			proxy_set_header Connection \"\";
			proxy_pass_request_body off;
			proxy_set_header Content-Length \"\";
			proxy_set_header X-Original-URI \$request_uri;
			proxy_set_header X-Original-Method \$request_method;
			proxy_set_header X-Forwarded-Host \$host;
			proxy_set_header X-Forwarded-Proto \$scheme;
		}
	}
}"
	local front=$started_pid deadline=$((SECONDS + READY_TIMEOUT))
	until ! port_free "$PORT_FRONT"; do
		((SECONDS < deadline)) || die "auth front nginx did not listen on $PORT_FRONT"
		kill -0 "$front" 2>/dev/null || die "auth front nginx exited (see $work/front/error.log)"
		sleep 0.1
	done
	SC_PORT=$PORT_FRONT
	SC_PIDS+=("$front")
}

# ensure_oauth2_proxy builds oauth2-proxy with go install into the tools
# cache once per machine and Go version (a few minutes cold) and sets
# oauth2_proxy to the binary. Its dependencies are the ones its own go.sum
# pins, checked against the Go checksum database.
ensure_oauth2_proxy() {
	local v=$OAUTH2_PROXY_VERSION goversion
	goversion=$(go env GOVERSION) || die "go env GOVERSION failed"
	local dir=${BENCH_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/sekisho}/oauth2-proxy-$v-$goversion
	oauth2_proxy=$dir/oauth2-proxy
	[[ -x $oauth2_proxy ]] && return 0
	mkdir -p "$dir" || die "cannot create $dir (set BENCH_TOOLS)"
	local tmp start=$SECONDS
	tmp=$(mktemp -d "$dir/.build.XXXXXX")
	log "building oauth2-proxy $v into $dir (once per machine; about 3 minutes on 2 cores)"
	GOBIN=$tmp GOFLAGS=-buildvcs=false go install -trimpath \
		-ldflags "-s -w -X github.com/oauth2-proxy/oauth2-proxy/v7/pkg/version.VERSION=$v" \
		"github.com/oauth2-proxy/oauth2-proxy/v7@$v" || {
		rm -rf "$tmp"
		die "could not build oauth2-proxy $v (go install github.com/oauth2-proxy/oauth2-proxy/v7@$v)"
	}
	mv "$tmp/oauth2-proxy" "$oauth2_proxy"
	rm -rf "$tmp"
	log "built oauth2-proxy $v in $((SECONDS - start)) s"
}

# start_oauth2_proxy starts oauth2-proxy on PORT_OAUTH2PROXY in front of
# the upstream: bearer JWTs from the bench issuer (audience bench) pass;
# its OIDC provider is the same issuer, reached only for discovery and keys.
start_oauth2_proxy() {
	local issuer=http://127.0.0.1:$PORT_ISSUER secret
	secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	GOMAXPROCS=2 spawn "$work/oauth2-proxy.log" "$oauth2_proxy" \
		--http-address="127.0.0.1:$PORT_OAUTH2PROXY" \
		--upstream="http://127.0.0.1:$PORT_UPSTREAM/" \
		--provider=oidc --oidc-issuer-url="$issuer" \
		--client-id=bench --client-secret=bench-secret \
		--redirect-url="http://127.0.0.1:$PORT_OAUTH2PROXY/oauth2/callback" \
		--cookie-secret="$secret" --cookie-secure=false \
		--email-domain='*' \
		--skip-jwt-bearer-tokens=true --extra-jwt-issuers="$issuer=bench" \
		--bearer-token-login-fallback=false \
		--set-xauthrequest=true \
		--request-logging=false --auth-logging=false --silence-ping-logging=true
	oauth2_proxy_pid=$started_pid
	wait_http "http://127.0.0.1:$PORT_OAUTH2PROXY/ping" "$oauth2_proxy_pid" "oauth2-proxy" "$work/oauth2-proxy.log"
	curl -fsS -o /dev/null -H "Authorization: Bearer $(cat "$work/token.jwt")" "http://127.0.0.1:$PORT_OAUTH2PROXY/" || {
		tail -n 20 "$work/oauth2-proxy.log" >&2 || true
		die "oauth2-proxy refused the bench JWT (log above)"
	}
	local code
	code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cut -c 1-40 "$work/token.jwt").bad.sig" "http://127.0.0.1:$PORT_OAUTH2PROXY/")
	[[ $code == 40? ]] || die "oauth2-proxy answered $code, not 401 or 403, to a forged JWT: it would not be checking tokens"
}

# children PID lists PID's child processes.
children() {
	local s f
	for s in /proc/[0-9]*/stat; do
		read -r f 2>/dev/null <"$s" || continue
		f=${f##*) }
		read -r -a f <<<"$f"
		if [[ ${f[1]} == "$1" ]]; then
			s=${s#/proc/}
			printf '%s\n' "${s%/stat}"
		fi
	done
}

# cpu_ticks PID... sums the user and system CPU time (clock ticks) of the
# processes and their children, from /proc/PID/stat.
cpu_ticks() {
	local pid p f sum=0
	for pid in "$@"; do
		for p in "$pid" $(children "$pid"); do
			read -r f 2>/dev/null <"/proc/$p/stat" || die "process $p is gone; cannot read its CPU time"
			f=${f##*) }
			read -r -a f <<<"$f"
			sum=$((sum + f[11] + f[12]))
		done
	done
	printf '%s\n' "$sum"
}
CLK_TCK=$(getconf CLK_TCK)

# wrk_script writes the Lua script every wrk run uses: done() prints one
# "BENCH ..." line with the counts and percentiles (p99.9 included, which
# wrk's --latency lacks); with SC_TOKENS, request() cycles through the
# tokens, each thread from its own offset; with SC_RELOAD, it re-reads the
# file every 200 requests and switches when the token changes.
wrk_script() {
	local out=$1
	cat >"$out" <<-'EOF'
		-- done() runs in wrk's main Lua state, after the threads have ended.
		local threads = {}
		function setup(thread)
			thread:set("id", #threads)
			table.insert(threads, thread)
		end
		function done(summary, latency, requests)
			local e, switched = summary.errors, 0
			for _, t in ipairs(threads) do switched = switched + (t:get("switched") or 0) end
			io.write(string.format("BENCH requests=%d duration_us=%d p99_us=%d p999_us=%d status=%d connect=%d read=%d write=%d timeout=%d switched=%d\n",
				summary.requests, summary.duration, math.floor(latency:percentile(99)), math.floor(latency:percentile(99.9)),
				e.status, e.connect, e.read, e.write, e.timeout, switched))
		end
	EOF
	[[ -n ${SC_TOKENS:-} ]] || return 0
	# request() must be defined when the script loads: wrk decides then
	# whether requests are built per call.
	cat >>"$out" <<-EOF
		local path, nthreads, reload = "$SC_TOKENS", $THREADS, ${SC_RELOAD:-0}
		local reqs, i, n, current = {}, 0, 0, nil
		switched = 0
		local function load()
			local list = {}
			for line in io.lines(path) do
				if line ~= "" then list[#list + 1] = line end
			end
			if #list == 0 then error("no tokens in " .. path) end
			if current ~= nil and list[1] ~= current then switched = 1 end
			current = list[1]
			reqs = {}
			for k, t in ipairs(list) do
				reqs[k] = wrk.format(nil, nil, {["Authorization"] = "Bearer " .. t})
			end
		end
		function init(args)
			load()
			i = (id or 0) * math.floor(#reqs / nthreads)
		end
		function request()
			n = n + 1
			if reload == 1 and n % 200 == 0 then load() end
			i = i % #reqs + 1
			return reqs[i]
		end
	EOF
}

# measure NAME WARMUP runs wrk against the current scenario (a warm-up of
# WARMUP first, unless 0) and sets m_rps m_requests m_cpu (µs per request)
# m_p99 m_p999 (µs) m_refused (non-2xx) m_switched m_warm_requests. Socket errors, and
# refused requests unless SC_ALLOW_REFUSED=1, fail the run.
measure() {
	local name=$1 warm=$2 port=${SC_PORT:-$PORT_SEKISHO} slug=${1//[^[:alnum:].]/-}
	local url=http://127.0.0.1:$port/ script=$work/wrk-$slug.lua out=$work/wrk-$slug.txt
	local bound=$((${DURATION%s} + ${warm%s} + 30)) # wrk's own -d should end it first
	wrk_script "$script"
	m_warm_requests=0
	if [[ ${warm%s} != 0 ]]; then
		log "$name: warm-up $warm"
		timeout "$bound" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$warm" -s "$script" "${SC_HEADERS[@]}" "$url" >"$out" ||
			die "$name: wrk warm-up failed"
		m_warm_requests=$(sed -n 's/^BENCH requests=\([0-9]*\) .*/\1/p' "$out")
	fi
	log "$name: $DURATION with $THREADS threads, $CONNECTIONS connections"
	local t0 t1
	t0=$(cpu_ticks "${SC_PIDS[@]}")
	timeout "$bound" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$script" "${SC_HEADERS[@]}" "$url" >"$out" ||
		die "$name: wrk failed"
	t1=$(cpu_ticks "${SC_PIDS[@]}")
	grep -v '^BENCH ' "$out"
	local line
	line=$(grep '^BENCH ' "$out") || die "$name: wrk printed no BENCH line (see $out)"
	local requests duration p99 p999 status connect read write timeout switched
	for kv in ${line#BENCH }; do
		case ${kv%%=*} in
		requests) requests=${kv#*=} ;;
		duration_us) duration=${kv#*=} ;;
		p99_us) p99=${kv#*=} ;;
		p999_us) p999=${kv#*=} ;;
		status) status=${kv#*=} ;;
		connect) connect=${kv#*=} ;;
		read) read=${kv#*=} ;;
		write) write=${kv#*=} ;;
		timeout) timeout=${kv#*=} ;;
		switched) switched=${kv#*=} ;;
		esac
	done
	((requests > 0)) || die "$name: wrk completed no request"
	if ((connect + read + write + timeout > 0)); then
		die "$name: wrk saw socket errors (connect $connect, read $read, write $write, timeout $timeout); the numbers would not measure the server"
	fi
	if ((status > 0)) && [[ ${SC_ALLOW_REFUSED:-0} != 1 ]]; then
		die "$name: $status of $requests answers were not 2xx or 3xx; the numbers would not measure the server"
	fi
	m_requests=$requests m_p99=$p99 m_p999=$p999 m_refused=$status
	m_rps=$(awk -v r="$requests" -v d="$duration" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
	m_cpu=$(awk -v t="$((t1 - t0))" -v hz="$CLK_TCK" -v r="$requests" 'BEGIN { printf "%.0f", t / hz * 1e6 / r }')
	m_switched=$switched
}

# add_row appends the last measurement to the table as the scenario's row.
add_row() {
	results+=("$sc|$SC_NAME|$SC_KIND|$m_rps|$m_cpu|$m_p99|$m_p999")
}

ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else printf "—" }'; }

# rps_of SCENARIO is the req/s of that scenario's row in rows, empty if
# it did not run.
rps_of() {
	local row s rps
	for row in "${rows[@]}"; do
		IFS='|' read -r s _ _ rps _ <<<"$row"
		if [[ $s == "$1" ]]; then
			printf '%s' "$rps"
			return 0
		fi
	done
	return 0
}

# print_table prints the table of the rows so far, titled TITLE, and the
# notes under it. Rows of one scenario from several rounds become their mean.
print_table() {
	local title=$1 rows row name kind rps cpu p99 p999 vs_caddy vs_o2p
	mapfile -t rows < <(printf '%s\n' "${results[@]}" | awk -F'|' '
		!($1 in n) { order[++k] = $1; name[$1] = $2; kind[$1] = $3 }
		{ n[$1]++; rps[$1] += $4; cpu[$1] += $5; p99[$1] += $6; p999[$1] += $7 }
		END { for (i = 1; i <= k; i++) { s = order[i]
			printf "%s|%s|%s|%.0f|%.0f|%.0f|%.0f\n", s, name[s], kind[s], rps[s] / n[s], cpu[s] / n[s], p99[s] / n[s], p999[s] / n[s] } }')
	local nginx_rps caddy_rps o2p_rps o2p_auth_rps jwt_rps distinct_rps
	nginx_rps=$(rps_of nginx)
	caddy_rps=$(rps_of caddy)
	o2p_rps=$(rps_of oauth2proxy)
	o2p_auth_rps=$(rps_of oauth2proxy_auth)
	jwt_rps=$(rps_of jwt)
	distinct_rps=$(rps_of jwt_distinct)
	local all_notes=("${notes[@]}")
	if [[ -n $jwt_rps && -n $distinct_rps ]]; then
		all_notes+=("Distinct tokens: $DISTINCT tokens cycled run at $(ratio "$distinct_rps" "$jwt_rps")× the same-token JWT row.")
	fi

	printf '\n### %s, loopback, %s cores (%s)\n\n' "$title" "$(nproc)" "$(date -u +%Y-%m-%d)"
	printf 'wrk -t%s -c%s -d%s after a %s warm-up%s; upstream: nginx returning a %s-byte body;\n' \
		"$THREADS" "$CONNECTIONS" "$DURATION" "$WARMUP" "$( ((ROUNDS == 1)) || echo ", mean of $ROUNDS interleaved rounds")" \
		"$body_bytes"
	printf 'CPU: user+system time of the server under test (nginx auth_request rows: the front nginx and\n'
	printf 'the authorization service) per request; load average before the run: %s.\n\n' "$load_before"
	printf '| scenario | req/s | vs nginx | vs Caddy | vs oauth2-proxy | CPU µs/request | p99 ms | p99.9 ms |\n'
	printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
	for row in "${rows[@]}"; do
		IFS='|' read -r _ name kind rps cpu p99 p999 <<<"$row"
		vs_caddy="—" vs_o2p="—"
		[[ -n $caddy_rps && $kind != auth ]] && vs_caddy=$(ratio "$rps" "$caddy_rps")
		[[ -n $o2p_rps && $kind == jwt ]] && vs_o2p=$(ratio "$rps" "$o2p_rps")
		[[ -n $o2p_auth_rps && $kind == auth ]] && vs_o2p=$(ratio "$rps" "$o2p_auth_rps")
		printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$rps" "$(ratio "$rps" "$nginx_rps")" \
			"$vs_caddy" "$vs_o2p" "$cpu" "$(ms "$p99")" "$(ms "$p999")"
	done
	if ((${#all_notes[@]})); then
		printf '\n'
		printf -- '- %s\n' "${all_notes[@]}"
	fi
}

ports=("$PORT_UPSTREAM" "$PORT_NGINX")
needs plain jwt jwt_distinct session authrequest authrequest_jwt rotation idle && ports+=("$PORT_SEKISHO" "$PORT_ADMIN")
needs authrequest authrequest_jwt && ports+=("$PORT_DECISION")
needs authrequest authrequest_jwt oauth2proxy_auth && ports+=("$PORT_FRONT")
needs caddy && ports+=("$PORT_CADDY")
needs oauth2proxy oauth2proxy_auth && ports+=("$PORT_OAUTH2PROXY")
needs jwt jwt_distinct oauth2proxy authrequest_jwt oauth2proxy_auth rotation && ports+=("$PORT_ISSUER")
for port in "${ports[@]}"; do
	port_free "$port" || die "127.0.0.1:$port is in use; set the BENCH_PORT_* variables"
done
if needs idle && (($(ulimit -n) < IDLE_CONNS + 1024)); then
	ulimit -n "$((IDLE_CONNS + 1024))" 2>/dev/null ||
		die "idle: $IDLE_CONNS connections need $((IDLE_CONNS + 1024)) open files; the limit is $(ulimit -Hn) (lower BENCH_IDLE_CONNS)"
fi

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
run_start=$SECONDS
log "building sekisho"
go build -o "$work/sekisho" ./cmd/sekisho
needs oauth2proxy oauth2proxy_auth && ensure_oauth2_proxy
if needs idle; then
	[[ -f bench/idleconns/main.go ]] || die "idle: bench/idleconns is missing from this tree; it opens the idle connections"
	go build -o "$work/idleconns" ./bench/idleconns || die "idle: could not build bench/idleconns"
fi

# The issuer runs for the whole bench, started (and its tokens minted)
# before anything is measured.
if needs jwt jwt_distinct oauth2proxy authrequest_jwt oauth2proxy_auth rotation; then
	go build -o "$work/jwtissuer" ./bench/jwtissuer
	issuer_args=(-listen "127.0.0.1:$PORT_ISSUER" -token-file "$work/token.jwt")
	needs jwt_distinct && issuer_args+=(-tokens "$DISTINCT" -tokens-file "$work/tokens.txt") &&
		log "jwt issuer: minting $DISTINCT distinct tokens"
	spawn "$work/jwtissuer.log" "$work/jwtissuer" "${issuer_args[@]}"
	wait_http "http://127.0.0.1:$PORT_ISSUER/.well-known/openid-configuration" "$started_pid" "jwt issuer" "$work/jwtissuer.log" 600
fi
sc_pids=() # the issuer and upstream are the run's, not a scenario's

log "starting upstream nginx on 127.0.0.1:$PORT_UPSTREAM"
start_nginx upstream "
worker_processes 1;
events { worker_connections 1024; }
http {
$(http_common upstream)
	server {
		listen 127.0.0.1:$PORT_UPSTREAM;
		location / { return 200 'hello from upstream\n'; }
	}
}"
wait_http "http://127.0.0.1:$PORT_UPSTREAM/" "$started_pid" "upstream nginx" "$work/upstream/error.log"
body_bytes=$(curl -fsS "http://127.0.0.1:$PORT_UPSTREAM/" | wc -c)
sc_pids=()

# run_baseline measures the nginx proxy, the row every ratio is over.
run_baseline() {
	log "starting baseline nginx proxy on 127.0.0.1:$PORT_NGINX"
	start_nginx proxy "
worker_processes 2;
events { worker_connections 1024; }
http {
$(http_common proxy)
	upstream backend {
		server 127.0.0.1:$PORT_UPSTREAM;
		keepalive 64;
		keepalive_requests 1000000;
	}
	server {
		listen 127.0.0.1:$PORT_NGINX;
		location / {
			proxy_pass http://backend;
			proxy_http_version 1.1;
			proxy_set_header Connection \"\";
		}
	}
}"
	wait_http "http://127.0.0.1:$PORT_NGINX/" "$started_pid" "nginx proxy" "$work/proxy/error.log"
	sc=nginx SC_NAME="nginx $(nginx -v 2>&1 | sed 's#.*nginx/##') proxy_pass" SC_KIND=base
	SC_PORT=$PORT_NGINX SC_PIDS=("$started_pid") SC_HEADERS=() SC_TOKENS="" SC_RELOAD=0
	measure "$SC_NAME" "$WARMUP"
	add_row
	stop_scenario
}

# run_scenario runs scenario $sc: its server, its measurement, its row.
run_scenario() {
	SC_NAME="sekisho $sc" SC_KIND=gw SC_SEKISHO=0 SC_TOP="" SC_POLICY="" SC_PORT="" SC_PIDS=()
	SC_HEADERS=() SC_TOKENS="" SC_RELOAD=0 SC_ALLOW_REFUSED=0 SC_PPROF=false
	"scenario_$sc"
	if ((SC_SEKISHO)); then
		conf=$work/sekisho-$sc.yaml
		cat >"$conf" <<-EOF
			listen: {http: "127.0.0.1:$PORT_SEKISHO"}
			admin: {listen: "127.0.0.1:$PORT_ADMIN", pprof: $SC_PPROF}
			log: {access: false}  # nginx runs with access_log off too
			$SC_TOP
			routes:
			  - name: bench
			    match: {path_prefix: /}
			    to: http://127.0.0.1:$PORT_UPSTREAM
			    $SC_POLICY
		EOF
		"$work/sekisho" check --config "$conf" || die "sekisho check rejected $conf (scenario $sc)"
		log "starting sekisho ($sc) on 127.0.0.1:$PORT_SEKISHO"
		GOMAXPROCS=2 GOGC=${BENCH_GOGC:-100} spawn "$work/sekisho-$sc.log" "$work/sekisho" serve --config "$conf"
		sekisho_pid=$started_pid
		wait_http "http://127.0.0.1:$PORT_ADMIN/readyz" "$sekisho_pid" "sekisho" "$work/sekisho-$sc.log"
		SC_PIDS+=("$sekisho_pid")
	fi
	# A scenario may need the running server to finish setting up.
	if declare -F "scenario_${sc}_ready" >/dev/null; then
		"scenario_${sc}_ready"
	fi
	if declare -F "scenario_${sc}_measure" >/dev/null; then
		"scenario_${sc}_measure"
	else
		measure "$SC_NAME" "$WARMUP"
		add_row
	fi
	stop_scenario
}

for ((round = 1; round <= ROUNDS; round++)); do
	round_tag=""
	if ((ROUNDS > 1)); then
		round_tag="(round $round) "
		log "round $round of $ROUNDS"
	fi
	run_baseline
	for sc in "${scenarios[@]}"; do
		# Memory per idle connection does not move from round to round.
		[[ $sc == idle ]] && ((round > 1)) && continue
		run_scenario
	done
done

finished=1
print_table "sekisho and its peers"
log "bench took $((SECONDS - run_start)) s"
