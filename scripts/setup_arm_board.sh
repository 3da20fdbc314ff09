#!/usr/bin/env bash
# Emulated aarch64 "boards" (Raspberry Pi 4 / Pi 5 stand-ins) reachable over ssh on 127.0.0.1, for the
# ssh runner's tests: ARM Debian userland + the aarch64 ai-edge-litert wheel, run by qemu-user.
#
#   scripts/setup_arm_board.sh OUT_DIR          set up and start the boards; writes OUT_DIR/<board>.toml
#   scripts/setup_arm_board.sh --stop OUT_DIR   stop them (their mounts go with them) and remove their profiles
#
# Needs root on Debian 12 (amd64): installs qemu-user-static, binfmt-support and OpenSSH if missing,
# enables the qemu-aarch64 binfmt handler (it must carry the F flag: the interpreter is pinned, so it
# works inside a chroot).
#
# How a board is built (docs/targets-arm.md has the why):
# - the arm64 root is NOT debootstrapped (~10 min, most of it the emulated second stage): the arm64 .debs
#   that python3, bash and coreutils need are resolved and fetched with apt-get under a private apt state
#   (its own sources list, lists, cache and an empty dpkg status; the system's apt is not touched) and
#   unpacked with dpkg-deb -x: no maintainer scripts run. The wheels (ai-edge-litert, numpy and their
#   dependencies, aarch64 builds) are installed with the host's pip --target; the .pyc files are compiled by
#   the host's Python 3.11 (bytecode does not depend on the CPU), so the board never compiles them emulated.
# - the ssh server is the host's OpenSSH with ChrootDirectory into the arm64 root: after the key login every
#   process of the session (bash, mkdir, python3, LiteRT's kernels) is an aarch64 binary run by qemu-user;
#   sftp (scp) is sshd's internal-sftp writing into the root. Key exchange is not emulated (seconds saved per
#   connection); it does not touch what is measured.
# - each board's sshd runs in its own mount namespace (unshare -m) where the root gets /proc, /sys, /dev and a
#   fake /proc/cpuinfo describing the board's cores (qemu-user shows the host's x86 one; LiteRT then
#   segfaults). sshd's SetEnv sets QEMU_CPU to the same core (sshd clears the environment; without it qemu
#   emulates its "max" CPU, whose int8 kernels give other numbers). The mounts vanish with the namespace
#   when sshd stops: nothing to unmount on the host.
#
# Cached across runs on the same machine (CACHE_DIR, default /var/cache/edge-attn/arm): the .debs, the wheels
# and the built root (keyed by the package and wheel lists). Environment: BOARDS (default "pi4 pi5 qemu-max";
# qemu-max shows the pitfall: QEMU_CPU=max), PORT_BASE (pi4 on it, pi5 +1, qemu-max +2; default the first free
# of 2222, 2232, ...), CACHE_DIR,
# PYTHON (a Python 3.11 with pip, default python3).
set -euo pipefail

DEB_PACKAGES="bash coreutils python3 libstdc++6"
WHEELS="ai-edge-litert==2.3.0 numpy==2.4.6"
ROOT_RECIPE_VERSION=1  # bump when the way the root is built changes
PLATFORMS=(manylinux_2_36_aarch64 manylinux_2_35_aarch64 manylinux_2_34_aarch64 manylinux_2_28_aarch64
           manylinux_2_27_aarch64 manylinux_2_17_aarch64 manylinux2014_aarch64 linux_aarch64)
MIRROR=http://deb.debian.org/debian
SECURITY_MIRROR=http://deb.debian.org/debian-security
CACHE_DIR=${CACHE_DIR:-/var/cache/edge-attn/arm}
BOARDS=${BOARDS:-pi4 pi5 qemu-max}
PORT_BASE=${PORT_BASE:-}  # empty: the first of 2222, 2232, ... whose three ports are all free
PYTHON=${PYTHON:-python3}

die() { echo "setup_arm_board: $*" >&2; exit 1; }
log() { echo "setup_arm_board: $*" >&2; }

# board name -> "QEMU_CPU port-offset description"
board_spec() {
  case "$1" in
    pi4) echo "cortex-a72 0 Raspberry Pi 4 stand-in: Cortex-A72 (BCM2711)" ;;
    pi5) echo "cortex-a76 1 Raspberry Pi 5 stand-in: Cortex-A76 (BCM2712)" ;;
    qemu-max) echo "max 2 qemu's default 'max' CPU with Cortex-A72 cpuinfo: the QEMU_CPU pitfall" ;;
    *) die "unknown board '$1' (known: pi4 pi5 qemu-max)" ;;
  esac
}

# /proc/cpuinfo of an aarch64 Linux with one block per host CPU (qemu-user runs guest threads on host CPUs).
fake_cpuinfo() {
  local qemu_cpu=$1 part variant revision features n
  case "$qemu_cpu" in
    cortex-a72|max) part=0xd08 variant=0x0 revision=3 features="fp asimd evtstrm crc32 cpuid" ;;
    cortex-a76) part=0xd0b variant=0x4 revision=1
                features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" ;;
    *) die "no cpuinfo for $qemu_cpu" ;;
  esac
  for ((n = 0; n < $(nproc); n++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\n' "$n" "$features"
    printf 'CPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$variant" "$part" "$revision"
  done
}

stop_boards() {
  local out=$1 pidfile pid
  for pidfile in "$out"/*/sshd.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      log "stopped $(basename "$(dirname "$pidfile")") (sshd $pid)"
    fi
    rm -f "$pidfile"
    rm -f "$out/$(basename "$(dirname "$pidfile")").toml"  # no profile of a board that is down
  done
}

install_host_packages() {
  local missing=()
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  command -v ssh >/dev/null || missing+=(openssh-client)
  command -v unshare >/dev/null || missing+=(util-linux)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

enable_binfmt() {
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
  grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 || update-binfmts --enable qemu-aarch64
  grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
    die "the qemu-aarch64 binfmt handler lacks the F flag (fix_binary): aarch64 programs would not run in a chroot"
}

# The private apt of arch arm64: its own sources, lists, archives and an empty dpkg status.
private_apt() {
  local apt=$CACHE_DIR/apt
  apt-get -o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null \
    -o Dir::State="$apt/state" -o Dir::State::status="$apt/status" -o Dir::Cache="$apt/cache" \
    -o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o Debug::NoLocking=1 \
    -o APT::Install-Recommends=false -qq "$@"
}

build_root() {
  local root=$1 apt=$CACHE_DIR/apt deb
  mkdir -p "$apt/state/lists/partial" "$apt/cache/archives/partial" "$CACHE_DIR/wheels"
  : > "$apt/status"
  {
    for suite in bookworm bookworm-updates; do
      echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $suite main"
    done
    echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $SECURITY_MIRROR bookworm-security main"
  } > "$apt/sources.list"
  log "resolving and fetching arm64 .debs for: $DEB_PACKAGES"
  private_apt update
  # shellcheck disable=SC2086
  private_apt install --download-only -y $DEB_PACKAGES >/dev/null
  rm -rf "$root.partial" && mkdir -p "$root.partial"
  # the exact set this resolution chose ("Inst NAME (VERSION SUITE [ARCH])"; the cache may hold older ones too)
  # shellcheck disable=SC2086
  for deb in $(private_apt install -s $DEB_PACKAGES |
               sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*\[\([a-z0-9]*\)\]).*/\1_\2_\3.deb/p' | sed 's/:/%3a/g'); do
    [ -e "$apt/cache/archives/$deb" ] || die "the private apt did not fetch $deb"
    dpkg-deb -x "$apt/cache/archives/$deb" "$root.partial"
  done
  [ -x "$root.partial/usr/bin/python3" ] || die "the unpacked root has no /usr/bin/python3"
  printf 'root:x:0:0:root:/root:/bin/bash\n' > "$root.partial/etc/passwd"
  printf 'root:x:0:\n' > "$root.partial/etc/group"
  log "fetching and installing aarch64 wheels: $WHEELS"
  local platform_args=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none)
  for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
  # shellcheck disable=SC2086
  "$PYTHON" -m pip download -q --disable-pip-version-check "${platform_args[@]}" -d "$CACHE_DIR/wheels" $WHEELS
  # shellcheck disable=SC2086
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-index --find-links "$CACHE_DIR/wheels" \
    "${platform_args[@]}" --target "$root.partial/usr/local/lib/python3.11/dist-packages" $WHEELS
  rm -rf "$root.partial/usr/local/lib/python3.11/dist-packages/bin"
  "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' ||
    die "$PYTHON is not Python 3.11: its .pyc files would not suit the board's Python 3.11"
  "$PYTHON" -m compileall -q -j 0 "$root.partial/usr/lib/python3.11" >/dev/null || true
  rm -rf "$root" && mv "$root.partial" "$root"
  touch "$root/.edge-attn-complete"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

choose_port_base() {
  local base offset
  for ((base = 2222; base < 2322; base += 10)); do
    for offset in 0 1 2; do port_in_use $((base + offset)) && continue 2; done
    echo "$base"
    return
  done
  die "no free ports in 2222..2321 of 127.0.0.1 (set PORT_BASE)"
}

start_board() {
  local name=$1 root=$2 out=$3 qemu_cpu offset description port dir
  read -r qemu_cpu offset description <<<"$(board_spec "$name")"
  port=$((PORT_BASE + offset))
  dir=$out/$name
  mkdir -p "$dir"
  if port_in_use "$port"; then
    die "port $port of 127.0.0.1 is in use (stop the boards with --stop $out, or set PORT_BASE)"
  fi
  fake_cpuinfo "$qemu_cpu" > "$dir/cpuinfo"
  cat > "$dir/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $out/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $out/user_key.pub
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers root
UsePAM no
StrictModes no
ChrootDirectory $root
SetEnv QEMU_CPU=$qemu_cpu
Subsystem sftp internal-sftp
EOF
  mkdir -p /run/sshd
  # a private mount namespace: the fake cpuinfo of this board over the root's /proc, and /sys and /dev
  unshare -m --propagation private sh -ec '
    root=$1 dir=$2
    mount -t proc proc "$root/proc"
    mount --bind "$dir/cpuinfo" "$root/proc/cpuinfo"
    mount -t sysfs sysfs "$root/sys"
    mount --rbind /dev "$root/dev"
    exec /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"' sh "$root" "$dir"
  for _ in $(seq 100); do [ -s "$dir/sshd.pid" ] && break; sleep 0.1; done
  [ -s "$dir/sshd.pid" ] || die "sshd of board $name did not start: $(tail -3 "$dir/sshd.log" 2>/dev/null)"
  cat > "$out/$name.toml" <<EOF
# $name: $description, emulated by qemu-user (QEMU_CPU=$qemu_cpu) on this x86 machine.
# Written by scripts/setup_arm_board.sh. Outputs come from LiteRT's aarch64 kernels; latency is emulated.
name = "$name"
description = "$description (emulated: qemu-user, QEMU_CPU=$qemu_cpu)"
kind = "ssh"
host = "127.0.0.1"
port = $port
user = "root"
identity_file = "$out/user_key"
python = "python3"
remote_dir = "/tmp/edge_attn-$name"
connect_timeout_s = 10
delegates = ["xnnpack", "cpu"]
threads = $(nproc)
runs = 10
warmup = 2
timeout_s = 300.0

[budgets_ms]
EOF
  # smoke test through the real path: key login, the board's python3 and LiteRT
  local answer
  answer=$(timeout 120 ssh -o BatchMode=yes -o ConnectTimeout=10 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    -o IdentitiesOnly=yes -i "$out/user_key" -p "$port" root@127.0.0.1 \
    'python3 -c "import platform, os, ai_edge_litert.interpreter; print(platform.machine(), os.environ.get(\"QEMU_CPU\"))"') ||
    die "board $name is up but its python3/LiteRT did not answer over ssh (log: $dir/sshd.log)"
  [ "$answer" = "aarch64 $qemu_cpu" ] || die "board $name answered '$answer', expected 'aarch64 $qemu_cpu'"
  log "board $name on 127.0.0.1:$port ($answer), profile $out/$name.toml"
}

main() {
  local out root key started
  if [ "${1:-}" = "--stop" ]; then
    [ $# -eq 2 ] || die "usage: $0 --stop OUT_DIR"
    stop_boards "$2"
    return
  fi
  [ $# -eq 1 ] || die "usage: $0 OUT_DIR | --stop OUT_DIR"
  [ "$(id -u)" -eq 0 ] || die "needs root (binfmt_misc, mount namespaces, chroot)"
  [ "$(uname -m)" = x86_64 ] || die "written for an x86_64 host (on an aarch64 machine, use a real board)"
  started=$(date +%s)
  mkdir -p "$1" && out=$(cd "$1" && pwd)
  stop_boards "$out"
  install_host_packages
  enable_binfmt
  key=$(printf '%s\n' "$DEB_PACKAGES" "$WHEELS" "$ROOT_RECIPE_VERSION" "${PLATFORMS[*]}" | sha256sum | cut -c1-12)
  root=$CACHE_DIR/root-$key
  if [ -e "$root/.edge-attn-complete" ]; then
    log "using the cached arm64 root $root"
  else
    mkdir -p "$CACHE_DIR"
    build_root "$root"
  fi
  find "$root/tmp" -mindepth 1 -delete  # what earlier runs left on the boards
  [ -e "$out/user_key" ] || ssh-keygen -q -t ed25519 -N "" -C edge-attn-arm-board-user -f "$out/user_key"
  [ -e "$out/host_key" ] || ssh-keygen -q -t ed25519 -N "" -C edge-attn-arm-board-host -f "$out/host_key"
  [ -n "$PORT_BASE" ] || PORT_BASE=$(choose_port_base)
  for board in $BOARDS; do
    start_board "$board" "$root" "$out"
  done
  log "ready in $(($(date +%s) - started)) s"
}

main "$@"
