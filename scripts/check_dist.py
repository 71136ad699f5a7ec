"""What a wheel and sdist of civit must hold (run by scripts/check_dist on a fresh build).

Usage: ``python scripts/check_dist.py DIST_FOLDER``
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

WHEEL_MUST_HAVE = ("civit/__init__.py", "civit/py.typed", "civit/cli/__init__.py")
SDIST_MUST_HAVE = ("LICENSE", "README.md", "pyproject.toml", "src/civit/py.typed")
NEVER = (".venv/", "__pycache__/", "bench/work/", "demo/", ".part")


def main(folder: Path) -> int:
    (wheel,) = folder.glob("civit-*.whl")
    (sdist,) = folder.glob("civit-*.tar.gz")
    wheel_names = zipfile.ZipFile(wheel).namelist()
    root = sdist.name.removesuffix(".tar.gz") + "/"
    with tarfile.open(sdist) as archive:
        sdist_names = [name.removeprefix(root) for name in archive.getnames()]
    problems = [f"{wheel.name} lacks {name}" for name in WHEEL_MUST_HAVE if name not in wheel_names]
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in wheel_names):
        problems.append(f"{wheel.name} lacks its LICENSE")
    problems += [
        f"{sdist.name} lacks {name}" for name in SDIST_MUST_HAVE if name not in sdist_names
    ]
    problems += [
        f"{archive} holds {name}"
        for archive, names in ((wheel.name, wheel_names), (sdist.name, sdist_names))
        for name in names
        if any(part in name for part in NEVER)
    ]
    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_dist: {wheel.name} and {sdist.name} are complete")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
