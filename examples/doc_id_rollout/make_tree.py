"""Generate (or check) the tree of the DOC_ID rollout example: 218 small Python modules.

    python make_tree.py DIR            # writes DIR/src/<package>/<layer>/<module>.py
    python make_tree.py --check DIR    # exit 0 when every module starts with exactly one
                                       # "# DOC_ID: <its stem>" line and nothing else has one

The tree is the same every time (no randomness), so runs can be compared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["HEADER", "check_tree", "make_tree", "modules"]

PACKAGES = ["billing", "catalog", "checkout", "inventory", "search", "shipping", "users", "utils"]
LAYERS = ["api", "core", "models"]
HEADER = "# DOC_ID: {stem}"


def make_tree(root: Path, count: int = 218) -> list[Path]:
    """Write ``count`` modules under ``root/src``; return their paths in order."""
    paths = []
    for i in range(count):
        package, layer = PACKAGES[i % len(PACKAGES)], LAYERS[i // len(PACKAGES) % len(LAYERS)]
        path = root / "src" / package / layer / f"{package}_{layer}_{i:03d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f'"""{package.title()} {layer}: helper {i}."""\n'
            "\n\n"
            f"def helper_{i:03d}(value: int) -> int:\n"
            f"    return value * {i} + {len(package)}\n",
            encoding="utf-8",
        )
        paths.append(path)
    return paths


def modules(root: Path) -> list[Path]:
    """Every module of the tree under ``root``, sorted."""
    return sorted((root / "src").rglob("*.py"))


def check_tree(root: Path) -> dict[str, list[str]]:
    """Modules by verdict: ``ok`` (one header, the right one, first line), ``missing``,
    ``duplicated`` (more than one header line) and ``wrong`` (another stem or place)."""
    verdicts: dict[str, list[str]] = {"ok": [], "missing": [], "duplicated": [], "wrong": []}
    for path in modules(root):
        lines = path.read_text(encoding="utf-8").splitlines()
        headers = [line for line in lines if line.startswith("# DOC_ID:")]
        if not headers:
            verdict = "missing"
        elif len(headers) > 1:
            verdict = "duplicated"
        elif lines[0] != HEADER.format(stem=path.stem):
            verdict = "wrong"
        else:
            verdict = "ok"
        verdicts[verdict].append(str(path))
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--count", type=int, default=218, help="modules to write")
    parser.add_argument("--check", action="store_true", help="check the headers instead")
    args = parser.parse_args()
    if not args.check:
        paths = make_tree(args.root, args.count)
        print(f"{len(paths)} modules under {args.root / 'src'}")
        return
    verdicts = check_tree(args.root)
    print(", ".join(f"{len(v)} {k}" for k, v in verdicts.items()))
    for verdict in ("missing", "duplicated", "wrong"):
        for path in verdicts[verdict][:10]:
            print(f"  {verdict}: {path}")
    sys.exit(0 if verdicts["ok"] and len(verdicts["ok"]) == len(modules(args.root)) else 1)


if __name__ == "__main__":
    main()
