#!/usr/bin/env bash
# Install PostgreSQL 15 + TimescaleDB 2.19.3. Idempotent: does nothing when 2.19.3 is installed.
#
# Edition (one build serves both, chosen per cluster by `timescaledb.license`):
#   * Community (continuous aggregates, policies, compression) when a complete source tarball is at
#     hand: $KALSHIBOOK_TSDB_TARBALL (checked against the pinned sha256 below), else, when
#     KALSHIBOOK_TSDB_DOWNLOAD=1, the official 2.19.3 release archive (short connect timeout).
#   * Otherwise Apache-2 only, built from Debian's source package (which strips tsl/).
# Prints the edition installed on its last line (stderr) and writes it to $EXT_DIR/kalshibook-edition.
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
TSDB_VERSION="2.19.3"
# sha256 of `git archive --prefix=timescaledb-2.19.3/ 2.19.3` (the official tag, tsl/ included).
TSDB_SHA256="${KALSHIBOOK_TSDB_SHA256:-70f0807d121cd9ec3828d3e8bed7ea0cdff47f50fab090406e22f49e4ced6cef}"
TSDB_URL="https://github.com/timescale/timescaledb/archive/refs/tags/${TSDB_VERSION}.tar.gz"
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
LIB_DIR="$("$PG_CONFIG" --pkglibdir)"
EDITION_FILE="$EXT_DIR/kalshibook-edition"
# Bumped whenever the build below changes (e.g. a compatibility fix), so machines rebuild.
BUILD_REV="kalshibook-build-2"

installed_edition() {
  if [ -f "$LIB_DIR/timescaledb-tsl-${TSDB_VERSION}.so" ]; then echo community
  elif [ -f "$LIB_DIR/timescaledb-${TSDB_VERSION}.so" ]; then echo apache
  else echo none; fi
}

want_community=0
TARBALL="${KALSHIBOOK_TSDB_TARBALL:-}"
if [ -n "$TARBALL" ] || [ "${KALSHIBOOK_TSDB_DOWNLOAD:-0}" = 1 ]; then want_community=1; fi

have="$(installed_edition)"
# The build revision matters for the Community edition only (its job runner carries the fix).
if [ "$have" = community ] && ! grep -qs "$BUILD_REV" "$EDITION_FILE"; then
  # Built by an older version of this script: rebuild, but never trade a Community build for
  # an Apache one because no Community source was given this time.
  if [ "$have" = community ] && [ "$want_community" = 0 ]; then
    log "timescaledb ${TSDB_VERSION} (community) was built by an older version of this script;"
    log "set KALSHIBOOK_TSDB_TARBALL to rebuild it with the current fixes (keeping it for now)"
    exit 0
  fi
  log "timescaledb ${TSDB_VERSION} (${have}) was built by an older version of this script: rebuilding"
  have="stale"
fi
if [ "$have" = community ] || { [ "$have" = apache ] && [ "$want_community" = 0 ]; }; then
  log "timescaledb ${TSDB_VERSION} already installed: ${have} edition"
  exit 0
fi

rm -rf "$BUILD_DIR"; mkdir -p "$BUILD_DIR"; cd "$BUILD_DIR"

# PostgreSQL 15.20 (and the same minor releases of 16-18) refuse to drop a portal still in
# status NEW ("cannot drop portal "" while it is being set up"). TimescaleDB 2.19.3 runs every
# background job in such a portal, created and dropped around the job, so every policy run
# (continuous-aggregate refresh, compression, retention) did its work, committed, and was then
# recorded as failed. Marking the portal done before dropping it is what the older server did
# implicitly (PortalDrop never looked at NEW vs DONE); nothing else changes.
patch_job_portal() {
  local f="$BUILD_DIR/src/tsl/src/bgw_policy/job.c"
  [ -f "$f" ] || return 0  # the Apache-2 source has no job runner
  if ! grep -qP '^\t\tPortalDrop\(portal, false\);$' "$f"; then
    log "unexpected $f: portal compatibility fix not applied"; return 1
  fi
  sed -i 's/^\t\tPortalDrop(portal, false);$/\t\tportal->status = PORTAL_DONE; \/* kalshibook: PG 15.20 portal check *\/\n\t\tPortalDrop(portal, false);/' "$f"
  log "applied the job-portal compatibility fix (PostgreSQL 15.20+)"
}

build() {  # build and install the source tree in ./src with the given extra cmake flags
  patch_job_portal
  cd "$BUILD_DIR/src"
  ./bootstrap "$@" -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DLINTER=OFF \
    -DGENERATE_DOWNGRADE_SCRIPT=OFF -DWARNINGS_AS_ERRORS=OFF -DPG_CONFIG="$PG_CONFIG" \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
  make -C build -j"$(nproc)" >/dev/null
  $SUDO make -C build install >/dev/null
}

community_source() {  # unpack a verified Community source into ./src; non-zero when none is at hand
  local archive="$BUILD_DIR/timescaledb-${TSDB_VERSION}.tar.gz"
  if [ -n "$TARBALL" ]; then
    if [ ! -f "$TARBALL" ]; then log "KALSHIBOOK_TSDB_TARBALL=$TARBALL: no such file"; return 1; fi
    cp "$TARBALL" "$archive"
  elif [ "${KALSHIBOOK_TSDB_DOWNLOAD:-0}" = 1 ]; then
    log "downloading $TSDB_URL"
    if ! curl -fsSL --connect-timeout 10 --max-time 300 -o "$archive" "$TSDB_URL"; then
      log "download failed"; return 1
    fi
  else
    return 1
  fi
  local sum; sum="$(sha256sum "$archive" | cut -d' ' -f1)"
  if [ "$sum" != "$TSDB_SHA256" ]; then
    log "sha256 mismatch for $archive: $sum (expected $TSDB_SHA256)"; return 1
  fi
  rm -rf src && mkdir -p src
  tar -xzf "$archive" -C src --strip-components=1 || { log "cannot unpack $archive"; return 1; }
  [ -d src/tsl ] || { log "the tarball has no tsl/ directory (not a complete source)"; return 1; }
}

if [ "$want_community" = 1 ] && community_source; then
  log "building TimescaleDB ${TSDB_VERSION} (Community edition, tsl/ included) against PostgreSQL ${PG_MAJOR}"
  build
else
  if [ "$have" = stale ]; then
    # Never replace a Community build by an Apache one (its old tsl library would stay behind,
    # unfixed, and look current).
    log "cannot rebuild the Community edition: no usable source (see above)"; exit 1
  fi
  if [ "$want_community" = 1 ]; then log "no usable Community source: falling back to the Apache-2 edition"; fi
  cd "$BUILD_DIR" && rm -rf src
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
  log "fetching timescaledb source package from ${TSDB_SUITE}"
  apt-get source -qq --download-only "timescaledb/${TSDB_SUITE}" >/dev/null 2>&1 || apt-get source -qq --download-only timescaledb >/dev/null
  dpkg-source -x --no-check ./*.dsc src >/dev/null
  log "building $(basename "$(ls -d ./*.dsc)" .dsc) (Apache-2 edition) against PostgreSQL ${PG_MAJOR}"
  build -DAPACHE_ONLY=ON
fi
edition="$(installed_edition)"
if [ "$want_community" = 1 ] && [ "$edition" != community ]; then
  log "asked for the Community edition, installed: $edition"
fi
echo "$edition $BUILD_REV" | $SUDO tee "$EDITION_FILE" >/dev/null
log "installed TimescaleDB ${TSDB_VERSION}: ${edition} edition"
