"""`make demo`: the whole mission on configs/demo.toml, against the three emulated clouds.

Starts moto (S3, two regions), fake-gcs-server and Azurite on free loopback ports, makes
the buckets as OPERATIONS.md says (Object Lock on S3), builds a sample tree with the
awkward cases (hard links, symlinks, odd names, a sparse file), and runs the real CLI as
a user would: init, then `daemon --once` (backups, replication to four targets, sync, a
signed drill, scrub), then restores from single providers and compares byte for byte, a
full-restore drill with a check command, and offline verification of the report chain.
The emulators are stopped at the end, whatever happens.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from coldvault import emulators
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


def run(*args: str, env: dict[str, str], show_log: bool = False) -> str:
    command = [sys.executable, "-m", "coldvault", "--config", str(CONFIG), *args]
    print(f"$ coldvault {' '.join(args)}", flush=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    output = done.stdout.rstrip()
    if show_log:
        output = "\n".join([*(line.lstrip("<0123456789>") for line in done.stderr.splitlines()), output]).strip()
    if output:
        print("  " + output.replace("\n", "\n  "), flush=True)
    if done.returncode != 0:
        sys.exit(f"demo failed: 'coldvault {' '.join(args)}' exited {done.returncode}: {done.stderr.strip()}")
    return output


def start_clouds(stack: contextlib.ExitStack, secrets_dir: Path) -> dict[str, str]:
    """The three emulators and the buckets of configs/demo.toml; the variables the config reads."""
    print("starting the emulated clouds: moto (S3), fake-gcs-server (GCS), Azurite (Azure)", flush=True)
    s3 = stack.enter_context(emulators.running(emulators.moto()))
    gcs = stack.enter_context(emulators.running(emulators.fake_gcs()))
    azure = stack.enter_context(emulators.running(emulators.azurite()))
    emulators.create_s3_bucket(s3.endpoint, "coldvault-demo-eu", "eu-west-1")
    emulators.create_s3_bucket(s3.endpoint, "coldvault-demo-us", "us-east-2")
    emulators.create_gcs_bucket(gcs.endpoint, "coldvault-demo")
    emulators.create_azure_container(azure.endpoint, "coldvault-demo")
    keys = {"access_key_id": emulators.MOTO_ACCESS_KEY, "secret_access_key": emulators.MOTO_SECRET_KEY}
    write_secret_file(secrets_dir / "aws.json", json.dumps(keys).encode(), what="S3 credentials")
    write_secret_file(
        secrets_dir / "azure.conn",
        emulators.azurite_connection_string(azure.endpoint).encode(),
        what="Azure credentials",
    )
    return {"COLDVAULT_DEMO_S3": s3.endpoint, "COLDVAULT_DEMO_GCS": gcs.endpoint}


def verify_restores(out: Path, www: Path) -> int:
    """Compare the restores with the originals; the number of tree entries compared."""
    restored = out / "restore" / str(www).lstrip("/")
    original, copy = tree_digest(www, {"cache"}), tree_digest(restored, set())
    if original != copy:
        differing = sorted(set(original.items()) ^ set(copy.items()))[:5]
        sys.exit(f"demo failed: the restored tree differs from the original: {differing}")
    dump = (out / "restore-db" / "shop.sql").read_text().splitlines()
    if len(dump) != 200_000 or not dump[-1].startswith("INSERT INTO orders VALUES (200000,"):
        sys.exit("demo failed: the restored dump is not what the command wrote")
    return len(original)


def keep_running(env: dict[str, str]) -> None:
    """Leave the emulated clouds up for the README's tour, in another terminal, until Ctrl-C."""
    print("\nthe emulated clouds keep running; in another terminal, from the checkout:\n")
    print("  . .venv/bin/activate")
    exports = {k: v for k, v in env.items() if k.startswith("COLDVAULT_DEMO")}
    print(f"  export COLDVAULT_CONFIG=configs/demo.toml {' '.join(f'{k}={v}' for k, v in sorted(exports.items()))}")
    print("\nCtrl-C here stops them.", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the emulators' shutdown short


def main(argv: list[str] | None = None) -> int:
    stay = "--keep-running" in (argv if argv is not None else sys.argv[1:])
    started = time.monotonic()
    out = Path(os.environ.get("COLDVAULT_DEMO_OUT", ROOT / "demo-out"))  # the tests point it elsewhere
    shutil.rmtree(out, ignore_errors=True)
    (out / "secrets").mkdir(parents=True)
    write_secret_file(out / "secrets" / "passphrase", secrets.token_urlsafe(24).encode(), what="passphrase")
    www = out / "sample" / "www"
    build_sample(www)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDVAULT_")}
    env["COLDVAULT_DEMO_DIR"] = str(out)
    with contextlib.ExitStack() as clouds:
        env.update(start_clouds(clouds, out / "secrets"))
        run("init", env=env)
        run("daemon", "--once", env=env, show_log=True)
        run("status", env=env)
        run("snapshots", env=env)
        # Restores from one provider each, as after losing the others.
        run("restore", "latest", str(out / "restore"), "--source", "website", "--target", "azure-we", env=env)
        run("restore", "latest", str(out / "restore-db"), "--source", "shopdb", "--target", "aws-us", env=env)
        run("drill", "--full", "latest", "--source", "shopdb", "--target", "gcs-us", env=env)
        public_key = str(out / "drills.pub")
        run("report", "pubkey", "--output", public_key, env=env)
        run("report", "verify", str(out / "state" / "reports"), "--chain", "--public-key", public_key, env=env)
        entries = verify_restores(out, www)
        page = sorted((out / "state" / "reports").glob("*.html"))[-1]
        print()
        print(f"demo passed in {time.monotonic() - started:.1f}s:")
        print(f"  {entries} entries restored identically from Azure alone (content, modes, mtimes, links, odd")
        print("  names, sparse file); the dump restored with all 200000 rows from S3 us-east-2 alone")
        print("  four providers hold the same encrypted repository; two drills passed, signed and chained")
        print(f"  the drill report to open in a browser: {page}")
        print(f"  everything is under {out}")
        if stay:
            keep_running(env)
        print("stopping the emulated clouds", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
