#!/usr/bin/env bash
# The test command: sets up a fresh Debian machine (Debian packages, Node.js, .venv, PostgreSQL), then runs
# ruff, mypy --strict and the whole pytest suite against real services. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source ops/setup.sh

ensure_debian_packages redis-server postgresql postgresql-client docker-compose prometheus chromium  # prometheus: promtool; chromium: the review page test
ensure_node  # tests/integration/test_node_producer.py runs `npm ci` in tests/node when node_modules is missing
ensure_postgres
ensure_venv "test,transformers"  # the transformers extra too: its backend tests run on the CPU in CI
export LLAVAGUARD_TEST_POSTGRES_URL="${LLAVAGUARD_TEST_POSTGRES_URL:-postgresql://llavaguard_test:llavaguard_test@127.0.0.1:5432/postgres}"

log "docker-compose config"  # the deployment files (no Docker engine needed); also tests/integration/test_compose.py
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml --profile api --profile s3 --profile monitoring --profile tools config -q
docker-compose -f docker-compose.yml -f ops/compose/multi-gpu.yml config -q
docker-compose --project-directory . -f ops/compose/cpu.yml --profile api --profile monitoring --profile tools config -q
log "ruff"
.venv/bin/ruff check worker producers tests ops
log "mypy --strict"
.venv/bin/mypy
log "pytest"
exec .venv/bin/pytest "$@"
