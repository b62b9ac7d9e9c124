#!/usr/bin/env python3
"""Build Cirrus's tiny guest image from Debian packages.

Usage::

    tools/guest-image/build.py [--output-dir DIR] [--force] [--json]

Downloads a handful of Debian packages with ``apt-get download`` (the host's apt sources), unpacks
them with ``dpkg-deb -x`` into a temporary directory and produces, in
``<output-dir>/<key>/``:

- ``vmlinuz``: the Debian cloud kernel (``linux-image-cloud-amd64``);
- ``initrd.img``: a gzip'd cpio initramfs: static busybox, busybox ``init`` as ``/init``, the
  virtio modules the guest needs, and ``/etc/init.d/rcS`` that prints ``CIRRUS-GUEST-READY`` on
  the serial console once userspace runs;
- ``cirrus-tiny.qcow2``: a bootable disk (MBR + syslinux + FAT16 partition holding the same kernel
  and initramfs), so the image boots without ``kernel_id``/``ramdisk_id``;
- ``manifest.json``: package versions, sizes, kernel command line.

``<key>`` hashes the exact package files apt would download (their names carry the versions) and
this script's own recipe version, so a second run is a cache hit and returns at once; the build
runs again only when a package changes (or with ``--force``). ``--json`` prints the manifest
(with absolute paths) on stdout, which is what tests and benchmarks read.

The only host tools needed are ``apt-get``, ``dpkg-deb`` and ``qemu-img``; dosfstools, mtools
and syslinux are taken from their Debian packages, unpacked, not installed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Bump when the recipe below changes in a way that changes the output.
RECIPE_VERSION = "6"

READY_LINE = "CIRRUS-GUEST-READY"
KERNEL_CMDLINE = "console=ttyS0 quiet"

META_PACKAGES = ["linux-image-cloud-amd64"]
PACKAGES = ["busybox-static"]
BUILD_TOOL_PACKAGES = ["dosfstools", "mtools", "syslinux", "syslinux-common"]

# Modules loaded at boot, in this order after their dependencies (resolved from each module's
# ``depends=`` field). Names as in the file names, without ``.ko``.
GUEST_MODULES = [
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "virtio-rng",
    "virtio_balloon",
    "virtio_scsi",
    "button",  # the ACPI power button: power_off and soft reboot shut the guest down cleanly
    "evdev",  # ... whose events busybox acpid reads from /dev/input/event*
]

DISK_SIZE_MB = 64
PARTITION_START_SECTOR = 2048

DEFAULT_OUTPUT_DIR = Path(
    os.environ.get(
        "CIRRUS_GUEST_IMAGE_DIR",
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cirrus" / "guest-image",
    )
)

INITTAB = """\
# Cirrus tiny guest: busybox init
::sysinit:/etc/init.d/rcS
::respawn:/bin/cttyhack /bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/echo CIRRUS-GUEST-SHUTDOWN
::shutdown:/bin/umount -a -r
"""

RCS = """\
#!/bin/sh
# Cirrus tiny guest: system start (run once by busybox init).
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /run /tmp /var/run /var/log
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp

while read -r module; do
    insmod "/lib/modules/$module" 2>/dev/null
done < /etc/modules.order
mdev -s 2>/dev/null

ip link set lo up

uuid=""
[ -r /sys/class/dmi/id/product_uuid ] && uuid=$(cat /sys/class/dmi/id/product_uuid)
uuid=$(echo "$uuid" | tr 'A-F' 'a-f')
name="cirrus"
[ -n "$uuid" ] && name="cirrus-$(echo "$uuid" | cut -c1-8)"
hostname "$name"

# The ACPI power button (virsh shutdown / power_off) powers the guest off cleanly.
mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\\npoweroff\\n' > /etc/acpi/PWRF/00000080
chmod 755 /etc/acpi/PWRF/00000080
acpid -l /var/log/acpid.log

# ---------------------------------------------------------------------------------------------
# CIRRUS HOOK: network and metadata.
# The networking work adds executables to /etc/cirrus/hooks.d/ (run in name order, before the
# ready line): a DHCP client (busybox udhcpc on eth0), the metadata fetch (SSH key, hostname)
# and user-data. Each hook gets the instance uuid as $1.
# ---------------------------------------------------------------------------------------------
if [ -d /etc/cirrus/hooks.d ]; then
    for hook in /etc/cirrus/hooks.d/*; do
        [ -x "$hook" ] && "$hook" "$uuid"
    done
fi

echo "CIRRUS-GUEST-READY hostname=$(hostname) uuid=${uuid:-unknown}"
"""

# The network hooks (busybox applets only). Each prints one line on the console that tests and
# operators look for. Without a NIC (eth0) they do nothing, so a server without a port boots as
# before.
UDHCPC_SCRIPT = """\
#!/bin/sh
# udhcpc's event script: configure the interface from the lease.
case "$1" in
deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    set -- $staticroutes
    while [ $# -ge 2 ]; do
        ip route replace "$1" via "$2" dev "$interface"
        shift 2
    done
    for router in $router; do
        ip route replace default via "$router" dev "$interface"
        break
    done
    : > /etc/resolv.conf
    for server in $dns; do echo "nameserver $server" >> /etc/resolv.conf; done
    echo "$ip" > /run/cirrus-ip
    ;;
esac
exit 0
"""

HOOK_DHCP = """\
#!/bin/sh
# 10-dhcp: bring eth0 up with DHCP.
[ -e /sys/class/net/eth0 ] || exit 0
ip link set eth0 up
if udhcpc -i eth0 -n -q -t 5 -T 2 -s /etc/cirrus/udhcpc.script >/dev/null 2>&1; then
    echo "CIRRUS-GUEST-NET eth0 ip=$(cat /run/cirrus-ip) mac=$(cat /sys/class/net/eth0/address)"
else
    echo "CIRRUS-GUEST-NET eth0 dhcp=failed mac=$(cat /sys/class/net/eth0/address)"
fi
"""

HOOK_METADATA = """\
#!/bin/sh
# 20-metadata: the instance's metadata, its SSH keys and user-data from 169.254.169.254.
[ -s /run/cirrus-ip ] || exit 0
base=/openstack/latest
# GET a path from the metadata service into a file (the body only; a status other than 200 fails).
# With nc: the static busybox's wget crashes (Debian 12's busybox-static, any URL).
http_get() {
    printf 'GET %s HTTP/1.0\\r\\nHost: 169.254.169.254\\r\\n\\r\\n' "$1" \\
        | nc -w 3 169.254.169.254 80 > /run/http.out 2>/dev/null || return 1
    head -n 1 /run/http.out | grep -q ' 200 ' || return 1
    awk '{ if (body) print; else { sub(/\\r$/, ""); if ($0 == "") body = 1 } }' /run/http.out > "$2"
}
for attempt in 1 2 3 4 5; do
    http_get "$base/meta_data.json" /run/meta_data.json && break
    rm -f /run/meta_data.json
    sleep 1
done
if [ ! -s /run/meta_data.json ]; then
    echo "CIRRUS-GUEST-METADATA failed"
    exit 0
fi
mkdir -p /root/.ssh
tr ',' '\\n' < /run/meta_data.json | sed -n 's/.*"data": *"\\([^"]*\\)".*/\\1/p' \\
    | sed 's/\\\\n$//' > /root/.ssh/authorized_keys
echo "CIRRUS-GUEST-METADATA ok keys=$(grep -c . /root/.ssh/authorized_keys)"
if http_get "$base/user_data" /run/user-data && [ -s /run/user-data ]; then
    if [ "$(head -c 2 /run/user-data)" = "#!" ]; then
        # In the background, as cloud-init does it after boot: a script that runs long (a ping
        # loop) does not hold back the ready line. Its output goes to the console line by line as
        # it comes (shell builtins: nothing buffers it), prefixed, then its exit status.
        chmod 700 /run/user-data
        (
            { /run/user-data 2>&1; echo "CIRRUS-RC=$?"; } | while IFS= read -r line; do
                case "$line" in
                    CIRRUS-RC=*) echo "CIRRUS-GUEST-USER-DATA exit=${line#CIRRUS-RC=}" ;;
                    *) echo "CIRRUS-USER-DATA: $line" ;;
                esac
            done
        ) &
    fi
fi
"""

SYSLINUX_CFG = """\
DEFAULT cirrus
PROMPT 0
TIMEOUT 0
LABEL cirrus
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND {cmdline}
"""


def log(message: str) -> None:
    print(f"guest-image: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, check=True, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload,no-any-return]
    except subprocess.CalledProcessError as exc:
        raise SystemExit(
            f"guest-image: {' '.join(cmd)} failed ({exc.returncode}): {exc.stderr.strip()}"
        ) from None


# --- apt ---------------------------------------------------------------------------------------

APT_OPTS = ["-o", "APT::Sandbox::User=root", "-q"]


def resolve_kernel_package() -> str:
    """``linux-image-cloud-amd64`` is a meta package; return the versioned image it depends on."""
    out = run(["apt-cache", "depends", "--important", META_PACKAGES[0]]).stdout
    for line in out.splitlines():
        match = re.match(r"\s*Depends:\s*(linux-image-\S+)", line)
        if match:
            return match.group(1)
    raise SystemExit(f"guest-image: cannot resolve the kernel behind {META_PACKAGES[0]}")


def package_files(packages: list[str]) -> list[str]:
    """The .deb file names apt would download (they carry the versions): the cache key."""
    out = run(["apt-get", *APT_OPTS, "download", "--print-uris", *packages]).stdout
    names = sorted(re.findall(r"^'[^']+'\s+(\S+\.deb)\s", out, flags=re.MULTILINE))
    if len(names) != len(packages):
        raise SystemExit(
            f"guest-image: apt cannot find all of {packages} (run apt-get update?): got {names}"
        )
    return names


def download_and_unpack(packages: list[str], workdir: Path, root: Path) -> None:
    debs = workdir / "debs"
    debs.mkdir()
    run(["apt-get", *APT_OPTS, "download", *packages], cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg-deb", "-x", str(deb), str(root)])


# --- kernel modules ----------------------------------------------------------------------------


def module_index(modules_dir: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in modules_dir.rglob("*.ko"):
        index[path.name[: -len(".ko")]] = path
        index[path.name[: -len(".ko")].replace("-", "_")] = path
    return index


def module_depends(path: Path) -> list[str]:
    data = path.read_bytes()
    match = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", data)
    if not match or not match.group(1):
        return []
    return [name for name in match.group(1).decode().split(",") if name]


def ordered_modules(modules_dir: Path, wanted: list[str]) -> list[Path]:
    """``wanted`` and their dependencies, each after what it depends on."""
    index = module_index(modules_dir)
    order: list[Path] = []
    seen: set[Path] = set()

    def visit(name: str) -> None:
        path = index.get(name) or index.get(name.replace("-", "_"))
        if path is None:
            raise SystemExit(f"guest-image: kernel module {name} not found in {modules_dir}")
        if path in seen:
            return
        seen.add(path)
        for dep in module_depends(path):
            visit(dep)
        order.append(path)

    for name in wanted:
        visit(name)
    return order


# --- initramfs (cpio newc, written here so no host cpio is needed) ------------------------------


class Cpio:
    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        fields = [
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0,
        ]  # fmt: skip
        self.ino += 1
        header = b"070701" + b"".join(f"{value:08X}".encode() for value in fields)
        self.buf.write(header + name.encode() + b"\x00")
        self._pad()
        self.buf.write(data)
        self._pad()

    def _pad(self) -> None:
        self.buf.write(b"\x00" * (-self.buf.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def build_initramfs(root: Path, kernel_version: str) -> tuple[bytes, list[str]]:
    modules_dir = root / "lib" / "modules" / kernel_version
    modules = ordered_modules(modules_dir, GUEST_MODULES)
    cpio = Cpio()
    for directory in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "etc/init.d", "etc/cirrus",
        "etc/cirrus/hooks.d", "proc", "sys", "dev", "run", "tmp", "var", "root", "lib",
        "lib/modules",
    ]:  # fmt: skip
        cpio.directory(directory)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3, 0o666)
    cpio.chardev("dev/ttyS0", 4, 64)
    cpio.file("bin/busybox", (root / "bin" / "busybox").read_bytes(), 0o755)
    applets = run([str(root / "bin" / "busybox"), "--list-full"]).stdout.split()
    for applet in applets:
        if applet.endswith("/busybox"):
            continue
        depth = applet.count("/")
        cpio.symlink(applet, "../" * depth + "bin/busybox")
    cpio.symlink("init", "bin/busybox")
    cpio.file("etc/inittab", INITTAB.encode())
    cpio.file("etc/init.d/rcS", RCS.encode(), 0o755)
    cpio.file("etc/hostname", b"cirrus\n")
    cpio.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    cpio.file("etc/group", b"root:x:0:\n")
    cpio.file("etc/cirrus/ready-line", (READY_LINE + "\n").encode())
    cpio.file("etc/cirrus/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755)
    cpio.file("etc/cirrus/hooks.d/10-dhcp", HOOK_DHCP.encode(), 0o755)
    cpio.file("etc/cirrus/hooks.d/20-metadata", HOOK_METADATA.encode(), 0o755)
    names = []
    for path in modules:
        cpio.file(f"lib/modules/{path.name}", path.read_bytes())
        names.append(path.name)
    cpio.file("etc/modules.order", ("\n".join(names) + "\n").encode())
    # mtime=0: the same inputs give the same bytes.
    return gzip.compress(cpio.finish(), compresslevel=9, mtime=0), names


# --- bootable disk -----------------------------------------------------------------------------


def write_mbr(raw: Path, mbr_code: bytes, start: int, sectors: int) -> None:
    entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x06, b"\xfe\xff\xff", start, sectors)
    with raw.open("r+b") as disk:
        disk.write(mbr_code[:440])
        disk.seek(446)
        disk.write(entry + b"\x00" * 48 + b"\x55\xaa")


def build_disk(
    root: Path, workdir: Path, vmlinuz: Path, initrd: Path, output: Path, cmdline: str
) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{root / 'usr' / 'bin'}:{root / 'sbin'}:{root / 'usr' / 'sbin'}:{env['PATH']}"
    env["MTOOLS_SKIP_CHECK"] = "1"
    raw = workdir / "disk.raw"
    total_sectors = DISK_SIZE_MB * 2048
    part_sectors = total_sectors - PARTITION_START_SECTOR
    with raw.open("wb") as disk:
        disk.truncate(total_sectors * 512)
    offset = PARTITION_START_SECTOR * 512
    run(
        [
            str(root / "sbin" / "mkfs.fat"), "-F", "16", "-n", "CIRRUS",
            "--offset", str(PARTITION_START_SECTOR), str(raw), str(part_sectors // 2),
        ],
        env=env,
    )  # fmt: skip
    image = f"{raw}@@{offset}"
    cfg = workdir / "syslinux.cfg"
    cfg.write_text(SYSLINUX_CFG.format(cmdline=cmdline))
    for source in (vmlinuz, initrd, cfg):
        run([str(root / "usr" / "bin" / "mcopy"), "-o", "-i", image, str(source), "::/"], env=env)
    run([str(root / "usr" / "bin" / "syslinux"), "--offset", str(offset), "--install", str(raw)],
        env=env)  # fmt: skip
    mbr = (root / "usr" / "lib" / "syslinux" / "mbr" / "mbr.bin").read_bytes()
    write_mbr(raw, mbr, PARTITION_START_SECTOR, part_sectors)
    run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(output)])


# --- main --------------------------------------------------------------------------------------


def cache_key(debs: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(f"recipe={RECIPE_VERSION}\ncmdline={KERNEL_CMDLINE}\n".encode())
    for name in debs:
        digest.update(name.encode() + b"\n")
    return digest.hexdigest()[:16]


def build(output_dir: Path, force: bool = False) -> dict[str, object]:
    kernel_pkg = resolve_kernel_package()
    packages = [kernel_pkg, *PACKAGES, *BUILD_TOOL_PACKAGES]
    debs = package_files(packages)
    key = cache_key(debs)
    target = output_dir / key
    manifest_path = target / "manifest.json"
    if manifest_path.exists() and not force:
        manifest: dict[str, object] = json.loads(manifest_path.read_text())
        manifest["cached"] = True
        return manifest

    started = time.monotonic()
    log(f"building {key} from {', '.join(debs)}")
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cirrus-guest-image-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)  # noqa: S103 - apt's _apt user writes here
        root = workdir / "root"
        root.mkdir()
        download_and_unpack(packages, workdir, root)
        kernel_version = kernel_pkg[len("linux-image-") :]
        staging = workdir / "out"
        staging.mkdir()
        vmlinuz = staging / "vmlinuz"
        shutil.copyfile(root / "boot" / f"vmlinuz-{kernel_version}", vmlinuz)
        initrd_bytes, modules = build_initramfs(root, kernel_version)
        initrd = staging / "initrd.img"
        initrd.write_bytes(initrd_bytes)
        disk = staging / "cirrus-tiny.qcow2"
        build_disk(root, workdir, vmlinuz, initrd, disk, KERNEL_CMDLINE)
        for path in staging.iterdir():
            path.chmod(0o644)  # the QEMU user must be able to read them
        manifest = {
            "key": key,
            "recipe": RECIPE_VERSION,
            "packages": debs,
            "kernel_version": kernel_version,
            "kernel_cmdline": KERNEL_CMDLINE,
            "ready_line": READY_LINE,
            "modules": modules,
            "files": {
                name: {"size": (staging / name).stat().st_size}
                for name in ("vmlinuz", "initrd.img", "cirrus-tiny.qcow2")
            },
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        # Publish atomically: a concurrent reader sees either no directory or a complete one.
        partial = output_dir / f".{key}.{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(staging, partial)
        os.chmod(partial, 0o755)  # noqa: S103 - the QEMU user reads the image
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
    log(f"built {target} in {manifest['build_seconds']} s")
    manifest["cached"] = False
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR)
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")
    args = parser.parse_args(argv)
    manifest = build(args.output_dir.resolve(), force=args.force)
    directory = args.output_dir.resolve() / str(manifest["key"])
    manifest["directory"] = str(directory)
    manifest["vmlinuz"] = str(directory / "vmlinuz")
    manifest["initrd"] = str(directory / "initrd.img")
    manifest["disk"] = str(directory / "cirrus-tiny.qcow2")
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        print(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
