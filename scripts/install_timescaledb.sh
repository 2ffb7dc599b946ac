#!/usr/bin/env bash
# Install PostgreSQL 15 + build TimescaleDB (Apache-2 edition) from Debian's source package.
# Idempotent: does nothing when the extension is already installed.
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
TSDB_SUITE="${TSDB_SUITE:-trixie}"
BUILD_DIR="${TSDB_BUILD_DIR:-/tmp/kalshibook-timescaledb-build}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log() { printf '[install_timescaledb] %s\n' "$*" >&2; }

need_pkgs=()
for p in "postgresql-${PG_MAJOR}" "postgresql-client-${PG_MAJOR}" "postgresql-server-dev-${PG_MAJOR}" \
         libssl-dev cmake gcc make dpkg-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing Debian packages: ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
EXT_DIR="$("$PG_CONFIG" --sharedir)/extension"
if ls "$EXT_DIR"/timescaledb.control >/dev/null 2>&1; then
  log "timescaledb already installed in $EXT_DIR"
  exit 0
fi

# Sources only from the newer suite: a deb-src entry, never trixie binaries.
SRC_LIST=/etc/apt/sources.list.d/kalshibook-trixie-src.sources
if [ ! -f "$SRC_LIST" ]; then
  log "adding deb-src entry for Debian ${TSDB_SUITE} (sources only)"
  $SUDO tee "$SRC_LIST" >/dev/null <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: ${TSDB_SUITE}
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  $SUDO apt-get update -qq
fi

rm -rf "$BUILD_DIR"; mkdir -p "$BUILD_DIR"; cd "$BUILD_DIR"
log "fetching timescaledb source package from ${TSDB_SUITE}"
apt-get source -qq --download-only "timescaledb/${TSDB_SUITE}" >/dev/null 2>&1 || apt-get source -qq --download-only timescaledb >/dev/null
dpkg-source -x --no-check ./*.dsc src >/dev/null
cd src
log "building $(basename "$(ls -d ../*.dsc)" .dsc) against PostgreSQL ${PG_MAJOR}"
./bootstrap -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DLINTER=OFF \
  -DGENERATE_DOWNGRADE_SCRIPT=OFF -DWARNINGS_AS_ERRORS=OFF -DPG_CONFIG="$PG_CONFIG" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
make -C build -j"$(nproc)" >/dev/null
$SUDO make -C build install >/dev/null
log "installed: $(ls "$EXT_DIR"/timescaledb--*.sql | head -1)"
