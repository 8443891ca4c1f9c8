"""The ramdisk's cache key: equal inputs give equal keys, any changed input another key
(tests/functional/test_ramdisk.py builds and boots the real thing)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

from metalplane.build import ramdisk
from metalplane.build.apt import _INST

PACKAGE = Path(ramdisk.__file__).resolve().parents[1]


def inputs(agent: str, **changes: object) -> ramdisk.Inputs:
    base = ramdisk.Inputs(
        sources=("deb http://deb.debian.org/debian bookworm main",),
        packages={"python3": "3.11.2-1+b1", "qemu-utils": "1:7.2+dfsg-7+deb12u18+b3"},
        kernel=("linux-image-6.1.0-57-cloud-amd64", "6.1.192-3"), agent=agent, recipe="r1")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def copy_agent(tmp_path: Path) -> Path:
    tree = tmp_path / "metalplane"
    shutil.copytree(PACKAGE / "agent", tree / "agent",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(PACKAGE / "__init__.py", tree / "__init__.py")
    return tree


def test_same_inputs_same_key(tmp_path: Path) -> None:
    tree = copy_agent(tmp_path)
    first = inputs(ramdisk.agent_source_hash(tree))
    again = inputs(ramdisk.agent_source_hash(copy_agent(tmp_path / "again")))
    assert first.key() == again.key()
    assert len(first.key()) == 24
    # the package map's order is not an input
    shuffled = dict(reversed(list(first.packages.items())))
    assert inputs(first.agent, packages=shuffled).key() == first.key()
    # the installed source tree hashes as a copy of it does
    assert ramdisk.agent_source_hash(PACKAGE) == ramdisk.agent_source_hash(
        copy_agent(tmp_path / "third"))


def test_a_changed_agent_source_is_a_new_key(tmp_path: Path) -> None:
    tree = copy_agent(tmp_path)
    before = inputs(ramdisk.agent_source_hash(tree))
    main = tree / "agent" / "main.py"
    main.write_text(main.read_text() + "\n# one more line\n")
    edited = inputs(ramdisk.agent_source_hash(tree))
    assert edited.agent != before.agent and edited.key() != before.key()
    # a new module of the agent is a new key too; a file the ramdisk does not carry is not
    (tree / "agent" / "extra.py").write_text("X = 1\n")
    added = inputs(ramdisk.agent_source_hash(tree))
    assert added.key() not in (before.key(), edited.key())
    (tree / "agent" / "notes.txt").write_text("not carried\n")
    assert inputs(ramdisk.agent_source_hash(tree)).key() == added.key()


def test_a_changed_package_version_kernel_or_recipe_is_a_new_key() -> None:
    base = inputs("a")
    changed = [
        inputs("a", packages={**base.packages, "python3": "3.11.2-1+b2"}),
        inputs("a", packages={**base.packages, "gdisk": "1.0.9-2.1"}),
        inputs("a", kernel=("linux-image-6.1.0-58-cloud-amd64", "6.1.193-1")),
        inputs("a", recipe="r2"),
        inputs("a", sources=("deb http://mirror.invalid/debian bookworm main",)),
        inputs("a", modules=(*ramdisk.MODULES, "e1000")),
    ]
    keys = {c.key() for c in changed}
    assert len(keys) == len(changed) and base.key() not in keys


def test_the_recipe_hash_covers_the_init_script() -> None:
    init = (Path(ramdisk.__file__).with_name("data") / "init").read_text()
    assert init.startswith("#!/bin/sh")
    assert "metalplane.api_url" in init  # what the iPXE script's kernel line carries
    assert len(ramdisk.recipe_hash()) == 64


def test_apt_simulation_lines_are_read_with_their_versions() -> None:
    lines = ["Inst python3 (3.11.2-1+b1 Debian:12.8/stable [amd64])",
             "Inst libc6 [2.36-9] (2.36-9+deb12u14 Debian-Security:12/stable-security [amd64])",
             "Conf python3 (3.11.2-1+b1 Debian:12.8/stable [amd64])"]
    found = {m.group(1): m.group(2) for line in lines if (m := _INST.match(line))}
    assert found == {"python3": "3.11.2-1+b1", "libc6": "2.36-9+deb12u14"}


def test_a_bad_source_is_a_clear_cli_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "metalplane.cli.main", "ramdisk", "build",
                           "--no-install", "--source", "http://deb.debian.org/debian"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "--source takes 'deb URI SUITE COMPONENTS'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_image_key_follows_its_packages_and_recipe() -> None:
    from metalplane.build.image import ImageInputs

    base = ImageInputs(sources=("deb http://deb.debian.org/debian bookworm main",),
                       packages={"cloud-init": "22.4.2-1+deb12u1"}, recipe="r1")
    same = ImageInputs(sources=base.sources, packages=dict(base.packages), recipe="r1")
    assert same.key() == base.key()
    changed = [dataclasses.replace(base, packages={"cloud-init": "22.4.2-1+deb12u2"}),
               dataclasses.replace(base, recipe="r2")]
    assert base.key() not in {c.key() for c in changed}
