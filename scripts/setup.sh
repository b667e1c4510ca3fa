#!/usr/bin/env bash
# Installs everything cogwheel needs to build, run and test, from Debian 12 packages.
# Idempotent: when every package is present it does nothing. Run as root (or with sudo).
set -euo pipefail

packages=(
  g++ cmake make pkg-config git ca-certificates
  libboost1.81-dev libboost-url1.81-dev libpqxx-dev libpq-dev nlohmann-json3-dev libssl-dev
  libspdlog-dev libfmt-dev libcli11-dev libyaml-cpp-dev libjemalloc-dev catch2
  postgresql-15 postgresql-contrib curl
)
# Node.js runs the official JavaScript clients in the tests; any Node >= 18 on PATH will do.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]}; run this script as root" >&2
  exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
