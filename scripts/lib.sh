# Shared setup for scripts/up and scripts/test: installs what Berth and its
# tests need on a fresh Debian 12 machine (root, Rust toolchain present).
# Every step is idempotent and cheap when already done.

# Debian packages Berth or its tests use, in one place: skopeo (a real
# registry client), docker-registry (an independent registry the puller is
# tested against), busybox-static (the payload of test images), haproxy and
# wrk (the load balancer benchmark's peer and load generator), curl and
# openssl (the load balancer tests: HTTP/2, TLS, a certificate).
BERTH_APT_PACKAGES=(ca-certificates python3 python3-venv skopeo docker-registry busybox-static runc iproute2 iptables procps haproxy wrk curl openssl)

# Build outside the clone so CI and developers reuse one target dir.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/berth-target}"
BERTH_VENV="${BERTH_VENV:-/var/tmp/berth-venv}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_packages() {
  local missing=()
  for p in "${BERTH_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
      echo "error: installing ${missing[*]} needs root; rerun as root or install them yourself" >&2
      return 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    echo "error: cargo is not on PATH; install the Rust toolchain (rustup) first" >&2
    return 1
  fi
}

# A Python venv with the real AWS clients (AWS CLI, boto3) and pytest,
# rebuilt only when tests/e2e/requirements.txt changes.
ensure_venv() {
  local req=tests/e2e/requirements.txt
  local stamp="$BERTH_VENV/.berth-requirements.sha256"
  local want
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [[ ! -x "$BERTH_VENV/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    log "creating the test venv in $BERTH_VENV (AWS CLI, boto3, pytest)"
    python3 -m venv "$BERTH_VENV"
    "$BERTH_VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
    echo "$want" >"$stamp"
  fi
}
