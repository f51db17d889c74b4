#!/usr/bin/env bash
# Loopback load comparison: sekisho against Debian's nginx as a plain reverse
# proxy, both in front of the same tiny nginx upstream, driven by wrk.
#
#   bench/load.sh [SCENARIO...]     default: plain
#
# Environment (defaults in brackets):
#   BENCH_DURATION [10s]  BENCH_WARMUP [3s]  BENCH_THREADS [2]  BENCH_CONNECTIONS [64]
#   BENCH_PORT_UPSTREAM [18081]  BENCH_PORT_NGINX [18082]
#   BENCH_PORT_SEKISHO [18080]   BENCH_PORT_ADMIN [19090]
#   BENCH_KEEP=1 keeps the temp dir (configs, logs) for a look afterwards.
#
# Everything listens on 127.0.0.1, lives in one temp dir and is killed on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
PORT_UPSTREAM=${BENCH_PORT_UPSTREAM:-18081}
PORT_NGINX=${BENCH_PORT_NGINX:-18082}
PORT_SEKISHO=${BENCH_PORT_SEKISHO:-18080}
PORT_ADMIN=${BENCH_PORT_ADMIN:-19090}
PORT_DECISION=${BENCH_PORT_DECISION:-18083}
PORT_FRONT=${BENCH_PORT_FRONT:-18084}
READY_TIMEOUT=30 # seconds to wait for a server to answer
STOP_TIMEOUT=10  # seconds a server gets to exit on SIGTERM before SIGKILL

for d in "$DURATION" "$WARMUP"; do
	[[ $d =~ ^[0-9]+s?$ ]] || die "durations are whole seconds like 10s, not '$d'"
done

# ---------------------------------------------------------------------------
# Scenarios. A scenario sets, for sekisho only (the nginx baseline is always a
# plain proxy, so the ratio shows what the scenario's work costs):
#   SC_TOP      extra top-level YAML for the sekisho config (jwt:, session:, ...)
#   SC_POLICY   the bench route's policy, one YAML line (public: true, or
#               allow: [{groups: [bench]}])
#   SC_HEADERS  extra wrk arguments, e.g. (-H "Authorization: Bearer $token")
# and may write files it needs (keys, tokens) into $work. Add one by defining
# scenario_NAME; `bench/load.sh NAME` then runs it. Planned:
#   jwt          (implemented) bench/jwtissuer serves discovery + JWKS; every
#                request carries its RS256 bearer token; route policy: a deny
#                rule with CEL plus two allow rules
#   session      (implemented) the built-in provider; curl signs in like a
#                browser and wrk sends the session cookie
#   authrequest  (implemented) a different topology: nginx auth_request to
#                sekisho's decision endpoint, against nginx with no auth_request
# ---------------------------------------------------------------------------

scenario_plain() {
	SC_TOP=""
	SC_POLICY="public: true"
	SC_HEADERS=()
}

scenario_jwt() {
	local port=${BENCH_PORT_ISSUER:-18082}
	port_free "$port" || die "port $port is in use (BENCH_PORT_ISSUER)"
	go build -o "$work/jwtissuer" ./bench/jwtissuer
	"$work/jwtissuer" -listen "127.0.0.1:$port" -token-file "$work/token.jwt" >"$work/jwtissuer.log" 2>&1 &
	pids+=($!)
	wait_http "http://127.0.0.1:$port/.well-known/openid-configuration" "$!" "jwt issuer" "$work/jwtissuer.log"
	SC_TOP="jwt: [{issuer: \"http://127.0.0.1:$port\", audiences: [bench], claims: {username: email}}]"
	SC_POLICY=$'allow: [{groups: [admin]}, {domains: [example.com]}]\n    deny: [{when: "!identity.mfa"}]'
	SC_HEADERS=(-H "Authorization: Bearer $(cat "$work/token.jwt")")
}

# scenario_session: a browser session from the built-in provider (cookie
# store): every request carries the session cookie.
scenario_session() {
	SC_TOP='providers: [{name: dev, builtin: {users: [{email: bench@example.com, password: bench, groups: [admin]}]}}]'
	SC_POLICY=$'allow: [{groups: [admin]}, {domains: [example.com]}]\n    deny: [{when: "identity.kind != \'user\'"}]'
	SC_HEADERS=()
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
	SC_TOP="api_tokens: {file: $work/tokens.yaml}"$'\n'"decision: {listen: \"127.0.0.1:$PORT_DECISION\"}"
	SC_POLICY='allow: [{tokens: [bench]}]'
	SC_HEADERS=(-H "Authorization: Bearer $token")
	SC_NAME="nginx + auth_request to sekisho"
}

scenario_authrequest_ready() {
	port_free "$PORT_FRONT" || die "127.0.0.1:$PORT_FRONT is in use (BENCH_PORT_FRONT)"
	start_nginx front "
worker_processes 2;
events { worker_connections 4096; }
http {
$(http_common front)
	upstream app { server 127.0.0.1:$PORT_UPSTREAM; keepalive 64; }
	upstream decide { server 127.0.0.1:$PORT_DECISION; keepalive 64; }
	server {
		listen 127.0.0.1:$PORT_FRONT;
		location / {
			auth_request /_auth;
			auth_request_set \$user \$upstream_http_x_forwarded_user;
			proxy_set_header X-Forwarded-User \$user;
			proxy_set_header Authorization \"\";
			proxy_pass http://app;
			proxy_http_version 1.1;
			proxy_set_header Connection \"\";
		}
		location = /_auth {
			internal;
			proxy_pass http://decide/nginx;
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
	local deadline=$((SECONDS + READY_TIMEOUT))
	until ! port_free "$PORT_FRONT"; do
		((SECONDS < deadline)) || die "auth front nginx did not listen on $PORT_FRONT"
		kill -0 "$started_pid" 2>/dev/null || die "auth front nginx exited (see $work/front/error.log)"
		sleep 0.1
	done
	SC_PORT=$PORT_FRONT
}

usage() {
	sed -n '2,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
	printf '\nScenarios:'
	declare -F | sed -n 's/^declare -f scenario_/ /p' | tr -d '\n'
	printf '\n'
}

scenarios=("$@")
((${#scenarios[@]})) || scenarios=(plain)
for sc in "${scenarios[@]}"; do
	case $sc in
	-h | --help)
		usage
		exit 0
		;;
	esac
	declare -F "scenario_$sc" >/dev/null || {
		usage >&2
		die "unknown scenario: $sc"
	}
done

setup_path
require_go
ensure_packages nginx-light:nginx wrk:wrk curl:curl

work=$(mktemp -d -t sekisho-bench.XXXXXX)
# nginx workers run as nobody when started as root and must reach their files.
chmod 755 "$work"
pids=()

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

cleanup() {
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
# deadline passes. Polling is the only way to learn that another process is up.
wait_http() {
	local url=$1 pid=$2 name=$3 log=$4 deadline=$((SECONDS + READY_TIMEOUT))
	until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$log" >&2 || true
			die "$name exited before it answered on $url (log above)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 20 "$log" >&2 || true
			die "$name did not answer 200 on $url within ${READY_TIMEOUT}s (log above)"
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
	nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
	pids+=($!)
	started_pid=$!
}

# http_common is the http{} preamble both nginx instances share: no logs, temp
# files inside the work dir, and client keep-alive as unbounded as Go's.
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

# run_wrk NAME PORT [WRK ARGS...] warms up, measures, and appends a result row.
results=()
run_wrk() {
	local name=$1 port=$2 out=$work/wrk-${1//[^[:alnum:].]/-}.txt
	shift 2
	local url=http://127.0.0.1:$port/
	local bound=$((${DURATION%s} + ${WARMUP%s} + 30)) # wrk's own -d should end it first
	log "$name: warm-up $WARMUP, then $DURATION with $THREADS threads, $CONNECTIONS connections"
	timeout "$bound" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$@" "$url" >/dev/null ||
		die "$name: wrk warm-up failed"
	timeout "$bound" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url" >"$out" ||
		die "$name: wrk failed"
	cat "$out"
	if grep -qE 'Non-2xx or 3xx responses|Socket errors' "$out"; then
		die "$name: wrk saw errors (above); the numbers would not measure the proxy"
	fi
	local rps p50 p99
	rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
	p50=$(awk '$1 == "50%" {print $2}' "$out")
	p99=$(awk '$1 == "99%" {print $2}' "$out")
	[[ -n $rps && -n $p50 && -n $p99 ]] || die "$name: could not read wrk's output $out"
	results+=("$name|$rps|$p50|$p99")
}

for port in "$PORT_UPSTREAM" "$PORT_NGINX" "$PORT_SEKISHO" "$PORT_ADMIN"; do
	port_free "$port" || die "127.0.0.1:$port is in use; set the BENCH_PORT_* variables"
done

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "building sekisho"
go build -o "$work/sekisho" ./cmd/sekisho

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
proxy_pid=$started_pid
wait_http "http://127.0.0.1:$PORT_NGINX/" "$proxy_pid" "nginx proxy" "$work/proxy/error.log"
nginx_version=$(nginx -v 2>&1 | sed 's#.*nginx/##')
run_wrk "nginx $nginx_version" "$PORT_NGINX"
stop "$proxy_pid"

for sc in "${scenarios[@]}"; do
	"scenario_$sc"
	conf=$work/sekisho-$sc.yaml
	cat >"$conf" <<-EOF
		listen: {http: "127.0.0.1:$PORT_SEKISHO"}
		admin: {listen: "127.0.0.1:$PORT_ADMIN"}
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
	GOMAXPROCS=2 GOGC=${BENCH_GOGC:-100} "$work/sekisho" serve --config "$conf" >"$work/sekisho-$sc.log" 2>&1 &
	pids+=($!)
	sekisho_pid=$!
	wait_http "http://127.0.0.1:$PORT_ADMIN/readyz" "$sekisho_pid" "sekisho" "$work/sekisho-$sc.log"
	# A scenario may need the running gateway to finish setting up (sign in).
	if declare -F "scenario_${sc}_ready" >/dev/null; then
		"scenario_${sc}_ready"
	fi
	run_wrk "${SC_NAME:-sekisho $sc}" "${SC_PORT:-$PORT_SEKISHO}" "${SC_HEADERS[@]}"
	SC_NAME="" SC_PORT=""
	stop "$sekisho_pid"
done

# to_ms turns wrk's latency ("812.00us", "1.23ms", "2.01s") into milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		n = v + 0
		if (v ~ /us$/) n /= 1000
		else if (v ~ /ms$/) n += 0
		else if (v ~ /m$/) n *= 60000
		else if (v ~ /s$/) n *= 1000
		printf "%.2f", n
	}'
}

IFS='|' read -r _ base_rps _ _ <<<"${results[0]}"
printf '\n### sekisho vs nginx, loopback, %s cores (%s)\n\n' "$(nproc)" "$(date -u +%Y-%m-%d)"
printf 'wrk -t%s -c%s -d%s after a %s warm-up; upstream: nginx returning a %s-byte body;\n' \
	"$THREADS" "$CONNECTIONS" "$DURATION" "$WARMUP" "$(curl -fsS "http://127.0.0.1:$PORT_UPSTREAM/" | wc -c)"
printf 'load average before the run: %s (other work on the machine skews the numbers).\n\n' "$load_before"
printf '| proxy | req/s | p50 ms | p99 ms | req/s vs nginx |\n'
printf '|---|---:|---:|---:|---:|\n'
for row in "${results[@]}"; do
	IFS='|' read -r name rps p50 p99 <<<"$row"
	printf '| %s | %.0f | %s | %s | %s |\n' "$name" "$rps" "$(to_ms "$p50")" "$(to_ms "$p99")" \
		"$(awk -v a="$rps" -v b="$base_rps" 'BEGIN { printf "%.2f", a / b }')"
done
