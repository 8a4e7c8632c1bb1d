# Shared set-up for ops/test.sh and ops/run-local.sh: installs what a fresh Debian machine lacks.
# Sourced, not executed. Idempotent: a second run only checks.

log() { printf '[llavaguard] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root for: $*"; return 1; fi
}

ensure_debian_packages() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    # Without Recommends: docker-compose would otherwise pull in a whole Docker engine (docker.io, containerd).
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {  # ensure_venv [extra]: .venv with the project installed (editable), refreshed when pyproject changes
    local extra="${1:-}" spec="." stamp
    [ -n "$extra" ] && spec=".[$extra]"
    stamp="$(sha256sum pyproject.toml | cut -c1-16)-$extra"
    if [ ! -x .venv/bin/python ]; then
        log "creating .venv"
        python3 -m venv .venv
    fi
    if [ "$(cat .venv/.llavaguard-stamp 2>/dev/null)" != "$stamp" ]; then
        log "installing the project into .venv ($spec)"
        if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e "$spec"; } \
            > .venv/install.log 2>&1; then
            tail -n 30 .venv/install.log >&2; log "pip install failed (full log: .venv/install.log)"; return 1
        fi
        echo "$stamp" > .venv/.llavaguard-stamp
    fi
}

postgres_running() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

ensure_postgres() {  # a local PostgreSQL on 127.0.0.1:5432 with a role the tests can log in as
    if ! postgres_running; then
        ensure_debian_packages postgresql
        local version
        version="$(ls /etc/postgresql | sort -V | tail -n 1)"
        log "starting PostgreSQL $version"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        for _ in $(seq 1 30); do postgres_running && break; sleep 1; done
        postgres_running || { log "PostgreSQL did not start"; return 1; }
    fi
    # A throwaway role for the test databases; it only exists on this machine's loopback server.
    as_root runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -c "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'llavaguard_test') THEN
            CREATE ROLE llavaguard_test LOGIN CREATEDB PASSWORD 'llavaguard_test';
        END IF; END \$\$;" >/dev/null
}

ensure_node() {  # node and npm for the Node.js producer test (tests/node): any Node.js >= 18 will do
    if command -v node >/dev/null && command -v npm >/dev/null; then return 0; fi
    ensure_debian_packages nodejs npm
}
