"""`make demo`: the main job end to end on configs/demo.toml, with local directories as targets.

Builds a sample tree with the awkward cases (hard links, symlinks, odd names,
a sparse file), then runs the real CLI as a user would: init, backup,
snapshots, restore, check --read-data, and compares the restore with the
original byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from coldvault.config.secret import write_secret_file

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "demo.toml"


def build_sample(www: Path) -> None:
    rng = random.Random(2020)
    words = "order member balance invoice refund customer merchant ledger backup restore".split()
    (www / "static" / "img").mkdir(parents=True)
    (www / "pages").mkdir()
    (www / "cache").mkdir()
    for i in range(200):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(50, 2000)))
        (www / "pages" / f"page-{i:03}.html").write_text(f"<p>{text}</p>\n")
    for i in range(5):
        (www / "static" / "img" / f"photo-{i}.jpg").write_bytes(rng.randbytes(rng.randint(200_000, 2_000_000)))
    (www / "static" / "app.js").write_text("console.log('coldvault');\n" * 5000)
    os.link(www / "static" / "app.js", www / "static" / "app.v2.js")  # a hard link
    os.symlink("pages/page-000.html", www / "index.html")  # a relative symlink
    os.symlink("/nonexistent/target", www / "dangling")  # a dangling absolute one: stored, never followed
    (www / "empty.txt").touch()
    (www / os.fsdecode(b"r\xe9sum\xe9 (latin-1)\nname.txt")).write_text("odd file name bytes\n")
    with open(www / "sparse.img", "wb") as f:
        f.truncate(64 << 20)  # 64 MiB of holes
        f.seek(32 << 20)
        f.write(b"data in the middle of a hole")
    (www / "pages" / "draft.tmp").write_text("excluded by '*.tmp'\n")
    (www / "cache" / "blob").write_text("excluded by 'cache'\n")


def tree_digest(root: Path, skip: set[str]) -> dict[str, str]:
    """What must survive a round trip: type, mode, mtime and content (or link target) of every entry."""
    digest = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in sorted(dirs + files):
            if name in skip or name.endswith(".tmp"):
                continue
            path = Path(folder) / name
            st = path.lstat()
            if path.is_symlink():
                what = "link:" + os.readlink(path)
            elif path.is_dir():
                what = "dir"
            else:
                what = hashlib.sha256(path.read_bytes()).hexdigest()
            digest[os.fsdecode(path.relative_to(root))] = f"{st.st_mode:o} {st.st_mtime_ns} {what}"
    return digest


def run(*args: str, env: dict[str, str]) -> str:
    command = [sys.executable, "-m", "coldvault", "--config", str(CONFIG), *args]
    print(f"$ coldvault {' '.join(args)}", flush=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    output = done.stdout.rstrip()
    if output:
        print("  " + output.replace("\n", "\n  "), flush=True)
    if done.returncode != 0:
        sys.exit(f"demo failed: 'coldvault {' '.join(args)}' exited {done.returncode}: {done.stderr.strip()}")
    return output


def main() -> int:
    started = time.monotonic()
    out = ROOT / "demo-out"
    shutil.rmtree(out, ignore_errors=True)
    (out / "secrets").mkdir(parents=True)
    write_secret_file(out / "secrets" / "passphrase", secrets.token_urlsafe(24).encode())
    www = out / "sample" / "www"
    build_sample(www)
    env = {**os.environ, "COLDVAULT_DEMO_DIR": str(out)}
    env.pop("COLDVAULT_PASSPHRASE", None)

    run("init", env=env)
    run("backup", env=env)
    run("snapshots", env=env)
    run("restore", "latest", str(out / "restore"), "--source", "website", env=env)
    run("restore", "latest", str(out / "restore-db"), "--source", "shopdb", env=env)
    run("check", "--read-data", env=env)

    restored = out / "restore" / str(www).lstrip("/")
    original, copy = tree_digest(www, {"cache"}), tree_digest(restored, set())
    if original != copy:
        differing = sorted(set(original.items()) ^ set(copy.items()))[:5]
        sys.exit(f"demo failed: the restored tree differs from the original: {differing}")
    dump = (out / "restore-db" / "shop.sql").read_text().splitlines()
    if len(dump) != 200_000 or not dump[-1].startswith("INSERT INTO orders VALUES (200000,"):
        sys.exit("demo failed: the restored dump is not what the command wrote")

    targets = [out / "targets" / name for name in ("primary", "offsite")]
    sizes = [sum(f.stat().st_size for f in t.rglob("*") if f.is_file()) for t in targets]
    print()
    print(f"demo passed in {time.monotonic() - started:.1f}s:")
    print(f"  {len(original)} entries restored identically (content, modes, mtimes, links, odd names, sparse file)")
    print("  the dump restored with all 200000 rows")
    print(f"  both targets hold the same encrypted repository: {sizes[0]:,} and {sizes[1]:,} bytes")
    print(f"  everything is under {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
