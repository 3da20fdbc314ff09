#!/usr/bin/env bash
# Software Vulkan (Mesa lavapipe) for LiteRT's GPU accelerator on a machine without a GPU, without changing the
# system: the packages are fetched with `apt-get download` through a private apt state folder (the system's apt
# sources, lists and installed packages are not touched), unpacked into a cache folder, and an env file is written
# that points the Vulkan loader at them. A second run finds the cache and returns at once.
#
# Why not Debian 12's own mesa-vulkan-drivers: its Mesa 22.3 lavapipe lacks the dynamic buffer-array indexing
# features that Dawn (LiteRT's WebGPU) requires, so LiteRT finds "no adapter". Mesa 25 from bookworm-backports works.
# The Vulkan loader (libvulkan1) is fetched the same way, so nothing is installed system-wide.
#
# Usage: scripts/setup_vulkan.sh            sets up (or reuses) the cache, prints the env file's path on stdout
#        . "$(scripts/setup_vulkan.sh)"     exports VK_DRIVER_FILES, LD_LIBRARY_PATH, XDG_RUNTIME_DIR
# Cache: $EDGE_ATTN_VULKAN_CACHE, else /var/cache/edge-attn/vulkan as root, else ~/.cache/edge-attn/vulkan.
# Needs: Debian 12 (bookworm) x86-64 or arm64, apt-get, dpkg-deb, network access to the Debian mirror (first run).
set -euo pipefail

log() { echo "setup_vulkan: $*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "$(id -u)" = 0 ]; then default_cache=/var/cache/edge-attn/vulkan; else default_cache="${XDG_CACHE_HOME:-$HOME/.cache}/edge-attn/vulkan"; fi
CACHE="${EDGE_ATTN_VULKAN_CACHE:-$default_cache}"
ENV_FILE="$CACHE/env"
ARCH_TRIPLET="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$(uname -m)-linux-gnu")"
LIB="$CACHE/mesa/usr/lib/$ARCH_TRIPLET"

if [ -f "$ENV_FILE" ] && [ -f "$LIB/libvulkan_lvp.so" ] && [ -e "$LIB/libvulkan.so.1" ]; then
  echo "$ENV_FILE"
  exit 0
fi

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "needs apt-get and dpkg-deb (Debian)"
. /etc/os-release
CODENAME="${VERSION_CODENAME:-}"
[ "$CODENAME" = bookworm ] || log "warning: made for Debian 12 (bookworm), this is '${CODENAME:-unknown}'"

# The Debian mirror the system already uses (deb822 sources first, then the one-line format).
mirror_uri() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # the URIs of the first stanza whose Suites include the release itself (not -security)
    awk -v s="$CODENAME" 'BEGIN{RS=""; FS="\n"}
      { uris=""; ok=0
        for (i=1;i<=NF;i++) { if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); uris=$i }
                              if ($i ~ /^Suites:/) { n=split($i, a, /[ \t]+/); for (j=2;j<=n;j++) if (a[j]==s) ok=1 } }
        if (ok && uris!="") { split(uris, u, /[ \t]+/); print u[1]; exit } }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v s="$CODENAME" '$1=="deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1)==s) { print $i; exit } }' "$f"
  done
}
MIRROR="${EDGE_ATTN_DEBIAN_MIRROR:-$(mirror_uri | head -n 1)}"
[ -n "$MIRROR" ] || die "no Debian mirror for '$CODENAME' found in /etc/apt/sources.list(.d); set EDGE_ATTN_DEBIAN_MIRROR"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$KEYRING" ] || die "$KEYRING missing (package debian-archive-keyring)"

mkdir -p "$CACHE"
WORK="$(mktemp -d "$CACHE/.work.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"/apt/{lists/partial,cache/archives/partial,etc,sources} "$WORK/debs/partial" "$WORK/mesa"
cat > "$WORK/apt/sources/private.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $CODENAME $CODENAME-backports
Components: main
Signed-By: $KEYRING
EOF
APT_OPTS=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$WORK/apt/sources"
          -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt/cache"
          -o "Dir::Etc::Preferences=/dev/null" -o "Dir::Etc::PreferencesParts=$WORK/apt/etc"
          -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
log "fetching package lists from $MIRROR ($CODENAME, $CODENAME-backports) into a private apt state"
apt-get "${APT_OPTS[@]}" -qq update >&2 || die "apt-get update (private state) failed"
# `install --download-only` against the system's own dpkg status (read, not written) fetches exactly what this
# machine lacks: on a bare Debian 12 that includes LLVM, libxcb, wayland...; here maybe only Mesa itself.
PACKAGES=(mesa-vulkan-drivers/"$CODENAME"-backports libvulkan1)
log "downloading ${PACKAGES[*]} and the libraries they need that this system lacks"
apt-get "${APT_OPTS[@]}" -o "Dir::Cache::archives=$WORK/debs" -qq -y --no-install-recommends \
  install --download-only --reinstall "${PACKAGES[@]}" >&2 || die "apt-get install --download-only (private state) failed"
for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$WORK/mesa"; done
L="$WORK/mesa/usr/lib/$ARCH_TRIPLET"
[ -f "$L/libvulkan_lvp.so" ] || die "lavapipe (libvulkan_lvp.so) not in the downloaded packages"
# lavapipe's other libraries (LLVM, zstd, ...) come from the system; name any that are missing.
missing="$(LD_LIBRARY_PATH="$L:$WORK/mesa/lib/$ARCH_TRIPLET" ldd "$L/libvulkan_lvp.so" | awk '/not found/{print $1}' | tr '\n' ' ')"
[ -z "$missing" ] || die "lavapipe needs libraries this system lacks: $missing"
version="$(dpkg-deb -f "$WORK"/debs/mesa-vulkan-drivers_*.deb Version)"

rm -rf "$CACHE/mesa" && mv "$WORK/mesa" "$CACHE/mesa"  # the cache check above needs the whole tree, so move it last
printf '{"ICD":{"api_version":"1.4.305","library_path":"%s/libvulkan_lvp.so"},"file_format_version":"1.0.0"}\n' \
  "$LIB" > "$CACHE/lvp_icd.json"
cat > "$ENV_FILE.tmp" <<EOF
# Software Vulkan (Mesa $version lavapipe) for LiteRT's GPU accelerator; written by scripts/setup_vulkan.sh
export VK_DRIVER_FILES="$CACHE/lvp_icd.json"
export LD_LIBRARY_PATH="$LIB:$CACHE/mesa/lib/$ARCH_TRIPLET\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export XDG_RUNTIME_DIR="\${XDG_RUNTIME_DIR:-/tmp/xdg-\$(id -u)}"
mkdir -p -m 700 "\$XDG_RUNTIME_DIR"
EOF
mv "$ENV_FILE.tmp" "$ENV_FILE"
log "Mesa $version lavapipe ready in $CACHE"
echo "$ENV_FILE"
