#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, then runs
# Rust checks and tests, then the Python integration suite (real ZODB/ZEO).
#
#   ./test.sh            everything
#   ./test.sh -k NAME    pass extra arguments to pytest
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

step() { printf '\n==> %s\n' "$*"; }

# Debian packages the suite needs: openssl (TLS test certificates), chromium
# (headless, checks the admin status page).
debian_packages=(openssl chromium)
missing=()
for pkg in "${debian_packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    step "apt-get install ${missing[*]}"
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

step "Python venv with pinned ZODB/ZEO (.venv)"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ] || ! cmp -s tests/python/requirements.txt .venv/requirements.installed; then
    "$python" -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt
    cp tests/python/requirements.txt .venv/requirements.installed
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -q -- -D warnings

step "cargo test"
cargo test --workspace --locked 2>&1 | tee "$logs/cargo-test.log"

step "pytest (real ZODB/ZEO clients and servers)"
cargo build --workspace --locked -q --bins
export ZEORAID_BIN="$root/target/debug/zeoraid"
export ZEORAID_VENV="$root/.venv"
set +e
.venv/bin/python -m pytest tests/python -q -p no:cacheprovider "$@" 2>&1 | tee "$logs/pytest.log"
pytest_status=${PIPESTATUS[0]}
set -e

step "summary"
grep -E '^test result:' "$logs/cargo-test.log" |
    awk '{p+=$4; f+=$6; i+=$8} END {printf "cargo test: %d passed; %d failed; %d ignored (%d suites)\n", p, f, i, NR}'
tail -n 1 "$logs/pytest.log"
exit "$pytest_status"
