#!/usr/bin/env bash
# Proxy benchmark: wrk through xiji-proxy vs configurable-http-proxy vs nginx as a reverse proxy vs
# direct to nginx serving a small file; websocket echo round trips; 100,000 routes; memory; CPU
# time per request. Prints one table of numbers and ratios, all measured in this run.
#
# Usage (from the repository root; needs wrk and nginx, and the test environment for CHP):
#   cargo build --release -p proxy --bin xiji-proxy --example proxy_bench
#   . .cache/test-env.sh            # XIJI_TEST_NODE_MODULES (configurable-http-proxy)
#   tests/bench/proxy.sh [SECONDS_PER_RUN]      # default 5
set -euo pipefail

DUR=${1:-5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
XP=${XIJI_PROXY_BIN:-$TARGET_DIR/release/xiji-proxy}
BENCH=${PROXY_BENCH_BIN:-$TARGET_DIR/release/examples/proxy_bench}
CHP=${XIJI_TEST_NODE_MODULES:?source .cache/test-env.sh first}/.bin/configurable-http-proxy
for tool in wrk nginx "$XP" "$BENCH" "$CHP"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
CLK=$(getconf CLK_TCK)
# utime+stime (ticks) of a process and its direct children (nginx workers).
cpu_ticks() {
    local total=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        [ -r "/proc/$p/stat" ] || continue
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$total"
}
rss_mb() {
    local total=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        [ -r "/proc/$p/status" ] || continue
        total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$p/status")))
    done
    awk -v k="$total" 'BEGIN { printf "%.1f", k / 1024 }'
}
to_us() { # wrk latency (e.g. 1.23ms, 850.00us, 1.01s) -> microseconds
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1000; else if (v ~ /s$/) m = 1000000; else m = 1; printf "%.0f", n * m }'
}

TOKEN=bench-token-0123456789abcdef
# --- the backend: nginx serving a small file (any path gives the same file) ------------------
BACKEND=$(port)
mkdir -p "$WORK/www" "$WORK/nginx-backend" "$WORK/nginx-proxy"
head -c 100 /dev/zero | tr '\0' 'x' >"$WORK/www/index.html"
cat >"$WORK/nginx-backend/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx-backend/nginx.pid;
error_log $WORK/nginx-backend/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx-backend;
    proxy_temp_path $WORK/nginx-backend;
    fastcgi_temp_path $WORK/nginx-backend;
    uwsgi_temp_path $WORK/nginx-backend;
    scgi_temp_path $WORK/nginx-backend;
    server {
        listen 127.0.0.1:$BACKEND;
        root $WORK/www;
        location / { try_files /index.html =404; }
    }
}
EOF
nginx -p "$WORK/nginx-backend" -c "$WORK/nginx-backend/nginx.conf" 2>/dev/null &
PIDS+=($!)
wait_port "$BACKEND"

# --- websocket echo backend -------------------------------------------------------------------
ECHO=$(port)
"$BENCH" ws-echo-server "$ECHO" &
PIDS+=($!)
wait_port "$ECHO"

# --- nginx as a reverse proxy -----------------------------------------------------------------
NGP=$(port)
cat >"$WORK/nginx-proxy/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx-proxy/nginx.pid;
error_log $WORK/nginx-proxy/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx-proxy;
    proxy_temp_path $WORK/nginx-proxy;
    fastcgi_temp_path $WORK/nginx-proxy;
    uwsgi_temp_path $WORK/nginx-proxy;
    scgi_temp_path $WORK/nginx-proxy;
    upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; }
    upstream echo { server 127.0.0.1:$ECHO; }
    server {
        listen 127.0.0.1:$NGP;
        location /ws/ {
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
        }
        location / {
            # As JupyterHub's documentation configures nginx, with the same four
            # X-Forwarded-* headers xiji-proxy and CHP add, and streaming (no buffering) as they do.
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Forwarded-Port \$server_port;
            proxy_buffering off;
        }
    }
}
EOF
nginx -p "$WORK/nginx-proxy" -c "$WORK/nginx-proxy/nginx.conf" 2>/dev/null &
NGP_PID=$!
PIDS+=($NGP_PID)
wait_port "$NGP"

# --- xiji-proxy and CHP, default target = the backend -----------------------------------------
# xiji-proxy with one serving thread, as nginx has one worker and CHP one event loop; a second
# xiji-proxy with its default (a thread per CPU) is measured at c=64 and 256 as well.
XPORT=$(port); XAPI=$(port)
XMET=$(port)
CONFIGPROXY_AUTH_TOKEN=$TOKEN "$XP" --ip 127.0.0.1 --port "$XPORT" --api-port "$XAPI" \
    --default-target "http://127.0.0.1:$BACKEND" --log-level warn --threads 1 \
    --metrics-port "$XMET" &
XP_PID=$!
PIDS+=($XP_PID)
XNPORT=$(port); XNAPI=$(port)
CONFIGPROXY_AUTH_TOKEN=$TOKEN "$XP" --ip 127.0.0.1 --port "$XNPORT" --api-port "$XNAPI" \
    --default-target "http://127.0.0.1:$BACKEND" --log-level warn &
XN_PID=$!
PIDS+=($XN_PID)
CPORT=$(port); CAPI=$(port)
CONFIGPROXY_AUTH_TOKEN=$TOKEN "$CHP" --ip 127.0.0.1 --port "$CPORT" --api-ip 127.0.0.1 --api-port "$CAPI" \
    --default-target "http://127.0.0.1:$BACKEND" --log-level error >/dev/null 2>&1 &
CHP_PID=$!
PIDS+=($CHP_PID)
wait_port "$XPORT"; wait_port "$XNPORT"; wait_port "$CPORT"; wait_port "$CAPI"
for api in "$XAPI" "$CAPI"; do
    curl -sf -X POST -H "Authorization: token $TOKEN" "http://127.0.0.1:$api/api/routes/ws" \
        -d "{\"target\": \"http://127.0.0.1:$ECHO\"}" >/dev/null
done

# The p50 and p99 (µs) of the requests xiji-proxy timed itself between two scrapes of its
# /metrics (its latency histogram; linear within a bucket, as Prometheus' histogram_quantile).
own_percentiles() {
    python3 - "$1" "$2" <<'PY'
import re, sys
def buckets(path):
    out = {}
    for line in open(path):
        m = re.match(r'xiji_proxy_response_seconds_bucket\{le="([^"]+)"\} (\d+)', line)
        if m:
            out[float(m.group(1))] = int(m.group(2))
    return out
a, b = buckets(sys.argv[1]), buckets(sys.argv[2])
bounds = sorted(b)
delta = [b[x] - a.get(x, 0) for x in bounds]
total = delta[-1]
def q(p):
    rank, lower, below = p * total, 0.0, 0
    for bound, count in zip(bounds, delta):
        if count >= rank:
            if bound == float("inf"):
                return lower * 1e6
            return (lower + (bound - lower) * (rank - below) / max(count - below, 1)) * 1e6
        lower, below = bound, count
    return float("nan")
print("%.0f / %.0f" % (q(0.5), q(0.99)) if total else "- / -")
PY
}

# run NAME URL PID [METRICS_URL] -> prints "rps p50_us p99_us cpu_us_per_req" per concurrency
# into $WORK/NAME, and the proxy's own "p50 / p99" into $WORK/NAME.own
run_wrk() {
    local name=$1 url=$2 pid=${3:-} metrics=${4:-} c t out before after reqs rps p50 p99 cpu
    for c in ${CONCURRENCIES:-1 16 64 256}; do
        t=$((c < 2 ? 1 : 2))
        [ -n "$pid" ] && before=$(cpu_ticks "$pid")
        [ -n "$metrics" ] && curl -sf "$metrics" >"$WORK/metrics-before"
        out=$(wrk -t "$t" -c "$c" -d "${DUR}s" --latency "$url")
        [ -n "$pid" ] && after=$(cpu_ticks "$pid")
        if [ -n "$metrics" ]; then
            curl -sf "$metrics" >"$WORK/metrics-after"
            echo "$c $(own_percentiles "$WORK/metrics-before" "$WORK/metrics-after")" >>"$WORK/$name.own"
        fi
        reqs=$(echo "$out" | awk '/requests in/ {print $1}')
        rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
        p50=$(to_us "$(echo "$out" | awk '$1 == "50%" {print $2}')")
        p99=$(to_us "$(echo "$out" | awk '$1 == "99%" {print $2}')")
        if [ -n "$pid" ] && [ "$reqs" -gt 0 ]; then
            cpu=$(awk -v d=$((after - before)) -v clk="$CLK" -v n="$reqs" 'BEGIN { printf "%.1f", d / clk * 1e6 / n }')
        else
            cpu=-
        fi
        echo "$c $rps $p50 $p99 $cpu" >>"$WORK/$name"
        echo "  $name c=$c: $rps req/s, p50 ${p50}us, p99 ${p99}us, cpu/req ${cpu}us" >&2
    done
}
ws_rtt() { "$BENCH" ws-rtt "$1" 3; }

echo "measuring (about $((DUR * 22 + 40)) s)..." >&2
run_wrk direct "http://127.0.0.1:$BACKEND/index.html"
run_wrk nginx "http://127.0.0.1:$NGP/index.html" "$NGP_PID"
run_wrk xiji "http://127.0.0.1:$XPORT/index.html" "$XP_PID" "http://127.0.0.1:$XMET/metrics"
run_wrk chp "http://127.0.0.1:$CPORT/index.html" "$CHP_PID"
CONCURRENCIES="64 256" run_wrk xijin "http://127.0.0.1:$XNPORT/index.html" "$XN_PID"
WS_DIRECT=$(ws_rtt "ws://127.0.0.1:$ECHO/ws/")
WS_NGINX=$(ws_rtt "ws://127.0.0.1:$NGP/ws/")
WS_XIJI=$(ws_rtt "ws://127.0.0.1:$XPORT/ws/")
WS_CHP=$(ws_rtt "ws://127.0.0.1:$CPORT/ws/")
RSS_XIJI_1=$(rss_mb "$XP_PID")
RSS_CHP_1=$(rss_mb "$CHP_PID")
RSS_NGINX=$(rss_mb "$NGP_PID")

# 100,000 routes in xiji-proxy (to the same backend), then the same load through one of them.
ticks_ms() { awk -v d="$1" -v clk="$CLK" 'BEGIN { printf "%.2f", d / clk }'; }
before=$(cpu_ticks "$XP_PID")
ADD_XIJI=$("$BENCH" add-routes "http://127.0.0.1:$XAPI" "$TOKEN" 100000 "http://127.0.0.1:$BACKEND")
ADD_XIJI_CPU=$(ticks_ms $(($(cpu_ticks "$XP_PID") - before)))
RSS_XIJI_100K=$(rss_mb "$XP_PID")
run_wrk xiji100k "http://127.0.0.1:$XPORT/bench/u77777/index.html" "$XP_PID" "http://127.0.0.1:$XMET/metrics"
# CHP: 10,000 routes (the issue's reference point for CHP).
before=$(cpu_ticks "$CHP_PID")
ADD_CHP=$("$BENCH" add-routes "http://127.0.0.1:$CAPI" "$TOKEN" 10000 "http://127.0.0.1:$BACKEND")
ADD_CHP_CPU=$(ticks_ms $(($(cpu_ticks "$CHP_PID") - before)))
RSS_CHP_10K=$(rss_mb "$CHP_PID")

col() { awk -v c="$2" -v f="$3" '$1 == c { print $f }' "$WORK/$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

echo
echo "## Throughput (wrk, ${DUR}s per run; 100-byte file; 2 wrk threads)"
echo
echo "| c | direct req/s | nginx-proxy | xiji-proxy | xiji 100k routes | CHP | xiji/direct | xiji/nginx | xiji/CHP | xiji100k/xiji |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for c in 1 16 64 256; do
    d=$(col direct $c 2); n=$(col nginx $c 2); x=$(col xiji $c 2); k=$(col xiji100k $c 2); h=$(col chp $c 2)
    echo "| $c | $d | $n | $x | $k | $h | $(ratio "$x" "$d") | $(ratio "$x" "$n") | $(ratio "$x" "$h") | $(ratio "$k" "$x") |"
done
echo
echo "xiji-proxy with its default of one serving thread per CPU (the table above: one thread):"
echo
echo "| c | req/s | p50 / p99 (µs) | CPU per request (µs) | /nginx-proxy | /CHP |"
echo "|---|---|---|---|---|---|"
for c in 64 256; do
    x=$(col xijin $c 2)
    echo "| $c | $x | $(col xijin $c 3) / $(col xijin $c 4) | $(col xijin $c 5) | $(ratio "$x" "$(col nginx $c 2)") | $(ratio "$x" "$(col chp $c 2)") |"
done
echo
echo "## Latency p50 / p99 (µs, wrk's own percentiles)"
echo
echo "| c | direct | nginx-proxy | xiji-proxy | xiji 100k routes | CHP | xiji-proxy's own | xiji 100k, own |"
echo "|---|---|---|---|---|---|---|---|"
own() { awk -v c="$2" '$1 == c { print $2, $3, $4 }' "$WORK/$1.own"; }
for c in 1 16 64 256; do
    row="| $c |"
    for s in direct nginx xiji xiji100k chp; do row="$row $(col $s $c 3) / $(col $s $c 4) |"; done
    echo "$row $(own xiji $c) | $(own xiji100k $c) |"
done
echo
echo "xiji-proxy's own: the time from each routed request's head to its response head, from its"
echo "/metrics histogram (so free of wrk's coordinated omission, and bucketed: 1-2-5 steps)."
echo
echo "## Proxy CPU time per request (µs, utime+stime of the proxy's processes / requests)"
echo
echo "| c | nginx-proxy | xiji-proxy | xiji 100k routes | CHP |"
echo "|---|---|---|---|---|"
for c in 1 16 64 256; do
    echo "| $c | $(col nginx $c 5) | $(col xiji $c 5) | $(col xiji100k $c 5) | $(col chp $c 5) |"
done
echo
echo "## Websocket echo, one connection, 32-byte messages (p50 µs / p99 µs / messages per s)"
echo
echo "| direct | nginx-proxy | xiji-proxy | CHP |"
echo "|---|---|---|---|"
echo "| $WS_DIRECT | $WS_NGINX | $WS_XIJI | $WS_CHP |"
set -- $WS_DIRECT; WD=$1
set -- $WS_XIJI; WX=$1
set -- $WS_CHP; WC=$1
set -- $WS_NGINX; WN=$1
added() { awk -v a="$1" -v b="$WD" 'BEGIN { printf "%.1f", a - b }'; }
echo
echo "Added to the p50 round trip: xiji-proxy $(added "$WX") µs, nginx-proxy $(added "$WN") µs, CHP $(added "$WC") µs."
echo
echo "## Routes and memory"
echo
echo "| | xiji-proxy | CHP |"
echo "|---|---|---|"
echo "| RSS with 1 route (after the load above) | $RSS_XIJI_1 MB | $RSS_CHP_1 MB |"
echo "| time to add 100,000 routes (xiji) / 10,000 routes (CHP) over the REST API | $ADD_XIJI s | $ADD_CHP s |"
echo "| the proxy's CPU time while adding them | $ADD_XIJI_CPU s | $ADD_CHP_CPU s |"
echo "| RSS with 100,000 routes (xiji) / 10,000 routes (CHP) | $RSS_XIJI_100K MB | $RSS_CHP_10K MB |"
echo
echo "nginx-proxy RSS (master + worker): $RSS_NGINX MB"
