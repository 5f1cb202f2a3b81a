#!/usr/bin/env bash
# Installs the servers that bench/nacossdk.py and bench/nacosidle.py compare
# distro with, into bench/.servers/ (git-ignored). Idempotent: what is
# installed already is kept. The benches find them there (bench/servers).
#
#   bash bench/servers/setup.sh
#
# r-nacos: `cargo install rnacos` (crates.io), its version pinned below:
#   0.8.8, the newest on crates.io when this was written; it builds with
#   `--locked` on Rust 1.95 (14 minutes here, on 2 cores shared with other builds).
#
# Nacos: the real Java server, from a Nacos server distribution that you
#   provide, as a release ships it (nacos-server-VERSION.tar.gz or .zip, or
#   that archive unpacked: a directory with target/nacos-server.jar):
#       NACOS_DIST=/path/to/nacos-server-2.5.1.tar.gz bash bench/servers/setup.sh
#   It is not fetched here: Maven Central, the package registry for Java,
#   has Nacos' client but not its server.
#   Tested with 2.5.1, the newest 2.x release (the SDKs' gRPC protocol; 3.x
#   moves the console and its ports). It runs on the JDK on PATH (17 here).
#   The bench starts it standalone (embedded storage) on 127.0.0.1, auth
#   off, inside a network namespace of the bench's own (bench/servers).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEST=${SERVERS_DIR:-$(dirname "$HERE")/.servers}
RNACOS_VERSION=0.8.8
mkdir -p "$DEST"

# r-nacos
rnacos=$DEST/rnacos/bin/rnacos
if [[ -x $rnacos && "$(cat "$DEST/rnacos/VERSION" 2>/dev/null)" == "$RNACOS_VERSION" ]]; then
  echo "r-nacos $RNACOS_VERSION: installed ($rnacos)"
elif ! command -v cargo >/dev/null; then
  echo "r-nacos: not installed: no cargo on PATH" >&2
else
  echo "r-nacos $RNACOS_VERSION: cargo install (minutes)..."
  started=$(date +%s)
  cargo install rnacos --locked --version "$RNACOS_VERSION" --root "$DEST/rnacos" --force
  echo "$RNACOS_VERSION" >"$DEST/rnacos/VERSION"
  echo "r-nacos $RNACOS_VERSION: built in $(($(date +%s) - started)) s ($rnacos)"
fi

# Nacos
nacos=$DEST/nacos
if [[ -z ${NACOS_DIST:-} ]]; then
  if [[ -f $nacos/target/nacos-server.jar ]]; then
    echo "Nacos $(cat "$nacos/VERSION" 2>/dev/null || echo '(version unknown)'): installed ($nacos)"
  else
    echo "Nacos: not installed: set NACOS_DIST to a Nacos server distribution (see $0)" >&2
  fi
else
  if ! command -v java >/dev/null; then
    echo "Nacos: no java on PATH to run it" >&2
    exit 1
  fi
  search=$NACOS_DIST
  if [[ ! -d $NACOS_DIST ]]; then
    search=$(mktemp -d)
    trap 'rm -rf "$search"' EXIT
    case $NACOS_DIST in
      *.tar.gz | *.tgz) tar -xzf "$NACOS_DIST" -C "$search" ;;
      *.zip) unzip -q "$NACOS_DIST" -d "$search" ;;
      *) echo "NACOS_DIST=$NACOS_DIST: neither a directory nor a .tar.gz, .tgz or .zip" >&2; exit 1 ;;
    esac
  fi
  jar=$(find "$search" -maxdepth 3 -path '*/target/nacos-server.jar' | head -1)
  if [[ -z $jar ]]; then
    echo "NACOS_DIST=$NACOS_DIST: no target/nacos-server.jar in it: not a Nacos server distribution" >&2
    exit 1
  fi
  root=$(dirname "$(dirname "$jar")")
  version=$(unzip -p "$jar" META-INF/MANIFEST.MF 2>/dev/null | sed -n 's/^Implementation-Version: *//p' | tr -d '\r')
  [[ -d $root/conf && -f $root/conf/nacos-logback.xml ]] || {
    echo "NACOS_DIST=$NACOS_DIST: no conf/nacos-logback.xml beside target/: not a Nacos server distribution" >&2
    exit 1
  }
  if [[ "$(realpath "$root")" != "$(realpath -m "$nacos")" ]]; then
    rm -rf "$nacos"
    mkdir -p "$root/plugins"
    cp -r "$root" "$nacos"
  fi
  echo "${version:-unknown}" >"$nacos/VERSION"
  echo "Nacos ${version:-(version unknown)}: installed ($nacos)"
fi
