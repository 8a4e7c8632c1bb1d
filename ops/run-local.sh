#!/usr/bin/env bash
# The main job on one machine: a Redis, a worker, and images submitted to it, verdicts printed as JSON lines.
#
#   bash ops/run-local.sh                    # judges generated sample images
#   bash ops/run-local.sh cat.jpg https://example.com/x.png s3://bucket/key.webp   # with LLAVAGUARD_S3_ALLOWED_BUCKETS=bucket
#   bash ops/run-local.sh --serve            # keep Redis + worker (+ stand-in) running until Ctrl-C
#
# Model server: with LLAVAGUARD_SGLANG_URL set, that server (SGLang running LlavaGuard) judges the images.
# Without it, the SGLang STAND-IN is started: it speaks SGLang's API but its verdicts are synthetic
# (derived from each image's colour), NOT LlavaGuard's. Redis: LLAVAGUARD_REDIS_URL, or a private one.
# Webhooks: with LLAVAGUARD_WEBHOOK_URL and LLAVAGUARD_WEBHOOK_SECRET set, the worker signs and sends events
# there (see README, "Webhooks") and the script waits for them before stopping.
set -euo pipefail
cd "$(dirname "$0")/.."
source ops/setup.sh

serve=false
if [ "${1:-}" = "--serve" ]; then serve=true; shift; fi

ensure_debian_packages redis-server
ensure_venv
mkdir -p run
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() {  # wait_for FILE TEXT SECONDS
    for _ in $(seq 1 "$(( $3 * 10 ))"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    log "timed out waiting for '$2' in $1:"; tail -n 20 "$1" >&2; return 1
}

if [ -z "${LLAVAGUARD_REDIS_URL:-}" ]; then
    port="$(free_port)"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$PWD/run" \
        --maxmemory-policy noeviction > run/redis.log 2>&1 &
    pids+=($!)
    export LLAVAGUARD_REDIS_URL="redis://127.0.0.1:$port/0"
    wait_for run/redis.log "Ready to accept connections" 20
fi

standin=""
if [ -z "${LLAVAGUARD_SGLANG_URL:-}" ]; then
    standin=yes
    log "=================================================================================="
    log "NO GPU MODEL: LLAVAGUARD_SGLANG_URL is not set, so the SGLang STAND-IN answers."
    log "Its verdicts are SYNTHETIC (derived from image colour), not LlavaGuard's judgement."
    log "Point LLAVAGUARD_SGLANG_URL at an SGLang server running LlavaGuard for real verdicts."
    log "=================================================================================="
    port="$(free_port)"
    .venv/bin/llavaguard standin --host 127.0.0.1 --port "$port" --max-running 32 --service-time-s 0.05 \
        > run/standin.log 2>&1 &
    pids+=($!)
    export LLAVAGUARD_SGLANG_URL="http://127.0.0.1:$port"
    wait_for run/standin.log "listening" 20
else
    log "model server: $LLAVAGUARD_SGLANG_URL"
fi

export LLAVAGUARD_STORE_URL="${LLAVAGUARD_STORE_URL:-sqlite:///$PWD/run/verdicts.db}"  # absolute: any shell finds it
log "verdicts go to $LLAVAGUARD_STORE_URL"
export LLAVAGUARD_METRICS_HOST="${LLAVAGUARD_METRICS_HOST:-127.0.0.1}"  # a free local port: runs never collide
export LLAVAGUARD_METRICS_PORT="${LLAVAGUARD_METRICS_PORT:-$(free_port)}"
.venv/bin/llavaguard worker > run/worker.log 2>&1 &
pids+=($!)
wait_for run/worker.log "ready." 60
log "worker ready (log: run/worker.log, metrics: http://$LLAVAGUARD_METRICS_HOST:$LLAVAGUARD_METRICS_PORT/metrics)"

# What another shell needs to reach this deployment: every LLAVAGUARD_* setting in force, secrets named only.
SECRET_SETTINGS=" LLAVAGUARD_API_KEYS LLAVAGUARD_API_ADMIN_KEYS LLAVAGUARD_WEBHOOK_SECRET LLAVAGUARD_CALLBACK_SECRET LLAVAGUARD_SGLANG_API_KEY "
print_environment() {
    local name secrets=()
    echo "# paste into another shell (from $PWD) to submit, read verdicts or start more workers:"
    for name in $(compgen -e | grep '^LLAVAGUARD_' | sort); do
        if [[ "$SECRET_SETTINGS" == *" $name "* ]]; then secrets+=("$name"); continue; fi
        printf 'export %s=%q\n' "$name" "${!name}"
    done
    [ "${#secrets[@]}" -eq 0 ] || echo "# and your secrets, not printed: ${secrets[*]}"
    echo "# then: .venv/bin/llavaguard submit --wait FILE_OR_URL   |   .venv/bin/llavaguard get ID"
    echo "# another worker: .venv/bin/llavaguard worker --hostname w2@%h   (its metrics are summed on the same port)"
}

if $serve; then
    if [ -n "${LLAVAGUARD_API_KEYS:-}" ]; then  # the HTTP API too (README, "HTTP API")
        export LLAVAGUARD_API_METRICS_PORT="${LLAVAGUARD_API_METRICS_PORT:-$(free_port)}"
        .venv/bin/llavaguard api --host 127.0.0.1 --port 8000 > run/api.log 2>&1 &
        pids=($! "${pids[@]}")  # the worker stays last: serving lasts as long as it does
        wait_for run/api.log "Uvicorn running" 30
        log "HTTP API on http://127.0.0.1:8000 (log: run/api.log, docs: http://127.0.0.1:8000/docs," \
            "metrics: http://127.0.0.1:$LLAVAGUARD_API_METRICS_PORT/metrics)"
    fi
    log "serving until Ctrl-C"
    log "verdict store: $LLAVAGUARD_STORE_URL"
    log "model server:  $LLAVAGUARD_SGLANG_URL$([ -n "$standin" ] && echo " (the SGLang STAND-IN: synthetic verdicts)")"
    log "redis:         $LLAVAGUARD_REDIS_URL"
    print_environment
    wait "${pids[-1]}"
    exit 0
fi

images=("$@")
if [ "${#images[@]}" -eq 0 ]; then
    .venv/bin/python - <<'PY'
from pathlib import Path
from worker.standin.palette import PALETTE, make_image
out = Path("run/samples"); out.mkdir(parents=True, exist_ok=True)
for code in sorted(PALETTE):
    (out / f"sample-{code}.png").write_bytes(make_image(code, size=(320, 240), fmt="PNG"))
PY
    images=(run/samples/*.png)
    log "no images given: judging ${#images[@]} generated samples in run/samples/"
fi
status=0
.venv/bin/llavaguard submit --wait --timeout 300 "${images[@]}" || status=$?
if [ -n "${LLAVAGUARD_WEBHOOK_URL:-}" ]; then  # the worker sends them; wait before stopping it
    log "waiting for webhook deliveries to $LLAVAGUARD_WEBHOOK_URL"
    .venv/bin/llavaguard webhooks wait --timeout 60 > /dev/null || log "webhooks still retrying; see run/worker.log"
fi
exit "$status"
