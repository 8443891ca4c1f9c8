#!/usr/bin/env bash
# Bring a fresh Debian 12 machine to the point where metalplane runs and its tests pass.
# Installs the Debian packages it needs (as root, or through sudo) and a virtualenv in .venv
# with metalplane and its development tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    python3 python3-venv python3-dev gcc  # the Python environment
    postgresql                            # the several-conductor store; its tests use a real server
    openvswitch-switch                    # the top-of-rack switch of the tests and the lab
    ovn-central ovn-host                  # OVN: the ovn backend (NB/SB, northd, controller)
    python3-openvswitch                   # its C JSON parser for OVSDB (see below)
    iproute2 iputils-ping ethtool         # namespaces, veth pairs, traffic checks
    dnsmasq-base isc-dhcp-client curl     # DHCP/TFTP for PXE, and a real client to test it
    ipxe qemu-utils lldpd                 # iPXE binaries, image conversion, LLDP on the switch
    e2fsprogs                             # mkfs.ext4: the demo builds its disk image
    fdisk                                 # sfdisk: the agent adds the config drive partition
    ipmitool                              # handy for checking an IPMI BMC by hand
    mmdebstrap cpio zstd kmod             # metalplane ramdisk build: rootfs, initramfs, modules
    qemu-system-x86                       # boots the built ramdisk in its test (TCG)
    extlinux syslinux-common              # metalplane image build: the image's BIOS boot loader
    dosfstools mtools                     # ... and its EFI system partition (FAT)
    # libvirt + QEMU (TCG): the domains behind sushy-tools' libvirt driver (BIOS tests) and
    # virtualbmc (IPMI tests); libvirt-dev + pkg-config build the libvirt-python binding
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
    libvirt-dev pkg-config
    ovmf                                  # UEFI firmware of the lab's --uefi-vms (OVMF)
)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# kubectl for the Kubernetes-style API's tests: Debian's kubernetes-client, unless a kubectl
# is already there (another package, e.g. the Google Cloud SDK's, owns /usr/bin/kubectl and
# dpkg refuses to overwrite it)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libvirtd runs QEMU as libvirt-qemu, which Debian's libvirt-daemon-system would create
# (not installed: it starts daemons at boot). Without udev, /dev/kvm stays root-only and
# libvirt, finding its QEMU user cannot open it, probes QEMU again on every domain definition
# (~30 s each): give it Debian's udev group and mode. The test domains are TCG all the same.
getent group kvm >/dev/null || as_root groupadd -r kvm
id libvirt-qemu >/dev/null 2>&1 || as_root useradd -r -M -s /usr/sbin/nologin -G kvm libvirt-qemu
id -nG libvirt-qemu | grep -qw kvm || as_root usermod -aG kvm libvirt-qemu
if [ -c /dev/kvm ]; then as_root chgrp kvm /dev/kvm && as_root chmod 0660 /dev/kvm; fi

# Prefer a Python 3.11+ already on PATH (pyenv etc.), else Debian's python3.
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "setup: $PY is older than 3.11" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PY" -m venv .venv
fi
echo "setup: installing metalplane and its dev tools into .venv"
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[dev]'

# OVSDB speaks JSON. The `ovs` package from PyPI parses it in pure Python unless its C
# extension was built, which needs libopenvswitch's headers (Debian 12 ships none). Debian's
# python3-openvswitch carries that extension (ovs/_json, the same OVS source); when it fits
# the venv's Python ABI, the venv's ovs package uses it: a 500-row OVSDB update parses in
# ~1 ms instead of ~19 ms. It is checked on a sample and dropped again if it misbehaves.
OVS_DIR=$(.venv/bin/python -c 'import os, ovs; print(os.path.dirname(ovs.__file__))')
EXT=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
C_JSON=/usr/lib/python3/dist-packages/ovs/_json$EXT
if [ -f "$C_JSON" ] && [ ! -e "$OVS_DIR/_json$EXT" ]; then
    ln -s "$C_JSON" "$OVS_DIR/_json$EXT"
fi
if ! .venv/bin/python -c 'import sys, ovs.json as j
sample = {"Port": {"u1": {"modify": {"tag": 1001, "other_config": ["map", [["k", "v\u00e9"]]]}}}, "x": [1.5, -2, None, True]}
sys.exit(j.PARSER != j.PARSER_C or j.from_string(j.to_string(sample)) != sample)'; then
    [ -L "$OVS_DIR/_json$EXT" ] && rm -f "$OVS_DIR/_json$EXT"
    echo "setup: note: OVSDB JSON is parsed in pure Python (no usable C parser found)"
fi
echo "setup: done. Try: .venv/bin/metalplane --help"
