#!/usr/bin/env bash
# Installs what swarmnet needs on a fresh Debian or Ubuntu machine, as root:
# the tools the data plane and the lab use at run time, the compiler and
# clients the tests use, then the npm dependencies (which also builds).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "setup: run as root (sudo bash scripts/setup.sh)" >&2; exit 1; fi
# The releases whose package names this list is written for: Debian 12 (what CI runs on) and
# Ubuntu 24.04 (the GitHub workflow's runner). Elsewhere a name may not exist (clang-14, libbpf1).
release=$(. /etc/os-release 2>/dev/null && echo "${ID:-?} ${VERSION_ID:-?}")
case "$release" in
  "debian 12" | "ubuntu 24.04") ;;
  *)
    if [ "${SWARMNET_SETUP_ANY_RELEASE:-}" != 1 ]; then
      echo "setup: supports Debian 12 and Ubuntu 24.04, this is '$release' (SWARMNET_SETUP_ANY_RELEASE=1 tries anyway)" >&2
      exit 1
    fi ;;
esac

pkgs=(
  iproute2 util-linux ethtool nftables libbpf1   # run time: links, namespaces, lab wire, gwbridge NAT, BPF
  clang-14 llvm-14 libbpf-dev linux-libc-dev     # build:bpf (pinned: clang 14, as in scripts/build-bpf.sh) and the layout tests
  iputils-ping curl iperf3 tshark bpftool python3 # real clients for tests and the benchmark (python3 sends UDP GSO)
  etcd-server etcd-client openssl                # desired state in etcd (--store etcd): the lab's and the tests' members, etcdctl, lab certificates
  bind9-dnsutils dnsmasq-base dnsperf            # DNS: dig in the e2e tests, the upstream the tests run, the DNS bench
  knot-dnsutils                                  # the DNS bench's AF_XDP client (kxdpgun); Debian 12 has 3.2.6, Ubuntu 24.04 3.3.x (assumed the same flags)
  netsniff-ng                                    # trafgen: the mesh bench's small-UDP sender (crafted frames, PACKET_TX_RING, no qdisc)
  runc umoci skopeo busybox-static               # tasks from images: the OCI runtime, unpacking and copying images; the tests' busybox image
  podman                                         # containers-storage: images (the node's podman store); the test builds one offline
  tini                                           # --init: the static init (tini-static) a task may run as PID 1
  docker-registry                                # a registry for the registry-pull test (run by the test in the lab's client namespace)
  apt                                            # apt-get here, apt-cache in test/unit/setup-tools.test.ts (on every Debian already)
)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The registry is a test's program, run by it in a namespace of its own: the package's service
  # (on :5000 of every address) is not left running on the host.
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
  fi
fi
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
npm ci --no-audit --no-fund
