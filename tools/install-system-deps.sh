#!/usr/bin/env bash
# Install the Debian packages the tests need, from nothing, and only what is missing.
# Services that a package would start at install time are held back: the tests start their own
# private MariaDB and RabbitMQ on free ports.
set -euo pipefail

PACKAGES=(
  mariadb-server mariadb-client   # private database servers for the API tests
  rabbitmq-server                 # private brokers for the RPC tests
  python3-venv python3-dev gcc    # the project's virtual environment
  procps iproute2                 # ps, ip: used by tests and the lab
  qemu-utils                      # qemu-img: the image service inspects every upload
  libvirt-daemon-system libvirt-clients qemu-system-x86   # the libvirt driver's real guests
  libvirt-dev pkg-config          # to build the libvirt-python binding
  nftables                        # the network agent: bridges, VXLAN, security groups (nft)
  dnsmasq-base busybox            # the DHCP agent's dnsmasq; busybox udhcpc as the tests' DHCP client
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi

echo "install-system-deps: installing ${missing[*]}"
made_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  made_policy=1
fi
trap '[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
