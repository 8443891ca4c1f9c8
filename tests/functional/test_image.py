"""The Debian image ``metalplane image build debian`` makes, written to a disk the way the
agent writes a qcow2 image plus metalplane's config drive, booted in QEMU (TCG) by SeaBIOS
(extlinux) and by OVMF (UEFI: GRUB from the EFI system partition): the kernel, systemd, and
cloud-init configuring the bond of a portgroup (two NICs) with its address and running the
user data from the ``config-2`` partition.

Built once per session into the cache shared with test_ramdisk.py's
(``$METALPLANE_TEST_CACHE``). The VM's NICs are on QEMU's user networks, with no peer:
nothing leaves the machine. Run under the lab lock (it runs QEMU)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from metalplane.agent import configdrive
from metalplane.build import image
from metalplane.build.common import sha256_file
from metalplane.lab.vm import OVMF_CODE, OVMF_VARS
from metalplane.lifecycle.networking import bond_properties
from tests.helpers.peers import stop_process

pytestmark = pytest.mark.functional
CACHE = Path(os.environ.get("METALPLANE_TEST_CACHE", "/var/tmp/metalplane-test-cache"))
MAC = "52:54:00:6d:70:02"
MAC2 = "52:54:00:6d:70:03"
DISK = 2 << 30


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> image.ImageResult:
    if os.geteuid() != 0:
        pytest.skip("image build needs root (mmdebstrap's root mode, a loop mount; CI runs "
                    "as root)")
    data = tmp_path_factory.mktemp("image-data")
    return image.build("debian", data, cache_dir=CACHE / "image", install=False)


def test_the_image_comes_as_raw_and_qcow2_with_checksums_and_is_cached(
        built: image.ImageResult, tmp_path: Path) -> None:
    sums = dict(reversed(line.split("  ")) for line in built.sums.read_text().splitlines())
    assert sums == {"debian-12.raw": sha256_file(built.raw),
                    "debian-12.qcow2": sha256_file(built.qcow2)}
    info = subprocess.run(["qemu-img", "info", "--output=json", str(built.qcow2)],
                          capture_output=True, text=True, check=True, timeout=30).stdout
    assert '"format": "qcow2"' in info and f'"virtual-size": {built.raw.stat().st_size}' in info
    table = subprocess.run(["sfdisk", "--dump", str(built.raw)], capture_output=True,
                           text=True, check=True, timeout=30).stdout
    assert re.search(r"start=\s*2048, .*type=83, bootable", table), table
    esp = re.search(r"start=\s*(\d+), size=\s*(\d+), type=ef", table)  # the ESP, for UEFI
    assert esp, table
    listing = subprocess.run(["mdir", "-b", "-s", "-i", f"{built.raw}@@{int(esp[1]) * 512}",
                              "::/"], capture_output=True, text=True, check=True, timeout=30,
                             env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout
    assert "::/EFI/BOOT/BOOTX64.EFI" in listing, listing
    again = image.build("debian", tmp_path / "data", cache_dir=CACHE / "image")
    assert again.cached and again.key == built.key
    assert sorted(p.name for p in again.installed) == [
        "debian-12.SHA256SUMS", "debian-12.qcow2", "debian-12.raw"]


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_the_image_boots_and_cloud_init_configures_it_from_the_config_drive(
        built: image.ImageResult, tmp_path: Path, firmware: str) -> None:
    assert shutil.which("qemu-system-x86_64"), "qemu-system-x86 missing: run scripts/setup.sh"
    flash: list[str] = []
    if firmware == "uefi":  # OVMF from read-only flash, its variables in a copy of its own
        assert OVMF_CODE.exists(), "ovmf missing: run scripts/setup.sh"
        shutil.copy(OVMF_VARS, tmp_path / "vars.fd")
        flash = ["-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                 "-drive", f"if=pflash,format=raw,file={tmp_path / 'vars.fd'}"]
    disk = tmp_path / "node.raw"
    # as the agent writes a qcow2 image: qemu-img to raw, then the config drive's partition
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(built.qcow2),
                    str(disk)], check=True, timeout=120)
    with open(disk, "r+b") as f:
        f.truncate(DISK)
    configdrive.write(str(disk), DISK, {
        "meta_data": {"uuid": "6d706c00-0000-4000-8000-000000000002", "name": "img1",
                      "hostname": "img1", "public_keys": {}},
        # a portgroup of two ports as metalplane writes it (lifecycle.networking's
        # config_drive): a phy link per member, a bond of them holding the address and
        # the portgroup's properties ({"miimon": 250}: not the kernel's default 100)
        "network_data": {
            "links": [{"id": "link0-0", "type": "phy", "ethernet_mac_address": MAC,
                       "mtu": 1500},
                      {"id": "link0-1", "type": "phy", "ethernet_mac_address": MAC2,
                       "mtu": 1500},
                      {"id": "bond0", "type": "bond", "ethernet_mac_address": MAC,
                       "bond_links": ["link0-0", "link0-1"], "bond_mode": "active-backup",
                       "mtu": 1500, **bond_properties({"miimon": 250})}],
            "networks": [{"id": "network0-0", "type": "ipv4", "link": "bond0",
                          "ip_address": "10.0.2.50", "netmask": "255.255.255.0",
                          "routes": []}],
            "services": []},
        "user_data": "#cloud-config\nruncmd:\n"
                     "  - [sh, -c, 'echo metalplane-user-data-ran > /dev/console']\n"
                     "  - [sh, -c, 'echo bond0-miimon=$(cat /sys/class/net/bond0/bonding/"
                     "miimon) > /dev/console']\n"})
    log = tmp_path / "img1-serial.log"
    vm = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "1", *flash,
         "-netdev", "user,id=n0", "-device", f"virtio-net-pci,netdev=n0,mac={MAC}",
         "-netdev", "user,id=n1", "-device", f"virtio-net-pci,netdev=n1,mac={MAC2}",
         "-drive", f"file={disk},if=virtio,format=raw",
         "-display", "none", "-monitor", "none", "-serial", f"file:{log}", "-no-reboot"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    console = ""
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and vm.poll() is None:
            console = log.read_text(errors="replace") if log.exists() else ""
            if re.search(r"Cloud-init v\. \S+ finished", console):
                break
            time.sleep(2)
        assert re.search(r"Cloud-init v\. \S+ finished", console), (
            f"qemu exit {vm.poll()}; serial console:\n{console[-4000:]}")
    finally:
        stop_process(vm)
    # the config drive after the root and EFI system partitions
    assert "DataSourceConfigDrive" in console and "source=/dev/vda3" in console
    if firmware == "uefi":  # OVMF ran GRUB from the ESP; the kernel found EFI firmware
        assert "efi: EFI v" in console, console[:6000]
    assert "metalplane-user-data-ran" in console  # the user data ran
    # the portgroup's property reached the kernel's bond (cloud-init: bond_miimon → bond-miimon)
    assert "bond0-miimon=250" in console, console[-4000:]
    assert re.search(r"img1 login:", console)  # the hostname from meta_data, a login prompt
    # the address from network_data.json on bond0 (the bond's MAC: its first member's), and
    # both NICs up in it without an address of their own and with the bond's MAC, which the
    # bonding driver gives its members, so the second NIC (MAC2) was enslaved (cloud-init's
    # ci-info table: Device, Up, Address, Mask, Scope, Hw-Address)
    table = "\n".join(line for line in console.splitlines() if "ci-info" in line)
    assert re.search(rf"\|\s+bond0\s+\|\s+True\s+\|\s+10\.0\.2\.50\s+\|\s+255\.255\.255\.0\s+"
                     rf"\|\s+global\s+\|\s+{MAC}", console), table or console[-4000:]
    members = re.findall(rf"\|\s+(?!bond0|lo\s)(\S+)\s+\|\s+True\s+\|\s+\.\s+\|\s+\.\s+\|\s+\.\s+"
                         rf"\|\s+{MAC}\s+\|", console)
    assert len(set(members)) == 2 and MAC2 not in table, table
