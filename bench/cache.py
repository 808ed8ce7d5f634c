#!/usr/bin/env python
"""Time the shared step cache (docs/cache.md): 50 steps of 1 s of work each.

    python bench/cache.py [--steps 50] [--seconds 1] [--workers 8] [--gigabyte]

Run it with the Python of the environment where stepup-dist is installed. It starts a
private embedded server on a Unix socket in a temporary folder, and times, as wall clock of
the whole `stepup-dist build -wN` (plan.py, worker start-up included), clones of one
project built one after the other:

- without the cache (`--no-cache`): the baseline;
- with the cache, first clone: every step runs and is stored (the cache's overhead on a
  build with no hits, against the baseline);
- with the cache, second clone: every step but plan.py is a hit (against the first clone);
- plan.py alone, for scale (a plan with the same steps removed), and the same plan with
  steps of no work (`sleep 0`) without the cache: the floor of one job per step.

Then the time to leave a hit of 1 MB and 100 MB (and 1 GB with `--gigabyte`) from the
cache folder, as a worker does it: the blob is read, hashed and copied (or reflinked) in
one pass, and renamed into place.
"""

import argparse
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from benchlib import find_stepup_dist, machine

from stepup_dist.blobstore import BlobStore
from stepup_dist.broker.server import EmbeddedServer
from stepup_dist.hashing import file_state

PLAN = """\
#!/usr/bin/env python
from stepup.core.api import step

for i in range({steps}):
    step(f"sleep {seconds}; echo {{i}} > out_{{i}}.txt", out=f"out_{{i}}.txt")
"""


def clone(base: Path, name: str, steps: int, seconds: float) -> Path:
    root = base / name
    root.mkdir()
    plan = root / "plan.py"
    plan.write_text(PLAN.format(steps=steps, seconds=seconds))
    plan.chmod(0o755)
    return root


def build(exe: Path, root: Path, url: str, prefix: str, workers: int, *extra: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [str(exe), "build", f"-w{workers}", "--redis", url, "--prefix", prefix, *extra],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"build in {root} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def materialize_time(folder: Path, size: int) -> tuple[float, str]:
    store = BlobStore(str(folder / "cache"))
    src = folder / f"src_{size}"
    with open(src, "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 24))
            fh.write(chunk)
            left -= len(chunk)
    state = file_state(str(src))
    assert state is not None
    out = store.put(str(src), state)
    src.unlink()
    dest = folder / "proj" / f"out_{size}"
    start = time.perf_counter()
    _, how = store.materialize(out, str(dest))
    elapsed = time.perf_counter() - start
    dest.unlink()
    store.remove(out[3])
    return elapsed, how


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--gigabyte", action="store_true", help="Also time a 1 GB hit (needs 2 GB of disk)."
    )
    args = parser.parse_args()
    exe = find_stepup_dist("bench/cache.py")
    with tempfile.TemporaryDirectory(prefix="stepup-cache-bench-") as tmp:
        base = Path(tmp)
        server = EmbeddedServer(base / "server")
        server.start()
        try:
            url, prefix = server.url, f"bench{uuid.uuid4().hex[:8]}"
            cache = base / "cache"
            n, s, w = args.steps, args.seconds, args.workers
            plan_only = build(exe, clone(base, "empty", 0, s), url, prefix, w)
            trivial = build(exe, clone(base, "trivial", n, 0), url, prefix, w, "--no-cache")
            baseline = build(exe, clone(base, "base", n, s), url, prefix, w, "--no-cache")
            first = build(exe, clone(base, "one", n, s), url, prefix, w, "--cache", str(cache))
            second = build(exe, clone(base, "two", n, s), url, prefix, w, "--cache", str(cache))
        finally:
            server.stop()
        print(machine())
        print(f"{n} steps of {s:g} s, -w{w}, one embedded server, cache {cache.name}/ on tmp")
        print(f"plan.py alone (0 steps)       {plan_only:7.2f} s")
        print(f"{n} steps of no work, no cache  {trivial:7.2f} s")
        print(f"no cache                      {baseline:7.2f} s")
        print(
            f"cache, first clone (no hits)  {first:7.2f} s  "
            f"(overhead {100 * (first - baseline) / baseline:+.1f} %)"
        )
        print(
            f"cache, second clone (hits)    {second:7.2f} s  "
            f"({100 * second / first:.1f} % of the first; "
            f"{100 * (second - plan_only) / first:.1f} % beyond plan.py alone)"
        )
        sizes = [1 << 20, 100 << 20] + ([1 << 30] if args.gigabyte else [])
        for size in sizes:
            elapsed, how = materialize_time(base, size)
            print(f"leave a hit of {size >> 20:5d} MiB       {elapsed:7.3f} s  ({how})")


if __name__ == "__main__":
    main()
