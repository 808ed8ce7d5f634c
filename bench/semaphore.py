"""Cost of the pool semaphore on one server: `python bench/semaphore.py [--pairs N]`.

Prints the median time of one acquire plus release (one client, no contention, the same
Lua scripts the planner and workers use), and how many acquire/release pairs per second the
server sustains with 16 clients, each in its own process, on one pool with a slot for each
(every request is granted: this measures the server, not the waiting).
Starts its own embedded server unless `--redis URL` is given.
"""

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

from stepup_dist.broker.connection import connect
from stepup_dist.broker.keys import Keys
from stepup_dist.broker.semaphore import PoolRef, Semaphores
from stepup_dist.broker.server import EmbeddedServer


def _pairs(url: str, prefix: str, pool: PoolRef, count: int, tag: str) -> tuple[int, int]:
    sem = Semaphores(connect(url), Keys(prefix))
    done = refused = 0
    for i in range(count):
        token = f"{tag}-{i}"
        if sem.acquire([pool], token, 30, waiter=tag)[0]:
            sem.release([pool], token)
            done += 1
        else:
            sem.withdraw([pool], tag)
            refused += 1
    return done, refused


def _client(args: tuple) -> tuple[int, int]:
    return _pairs(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5000, help="acquire/release pairs per client")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--redis", help="use this server instead of an embedded one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        url = args.redis
        if url is None:
            server = EmbeddedServer(Path(tmp) / "srv")
            server.start()
            url = server.url
        prefix = f"bench{os.getpid()}"
        try:
            sem = Semaphores(connect(url), Keys(prefix))
            pool = PoolRef("plan:bench:one", 1)
            times = []
            for i in range(args.pairs):
                start = time.perf_counter()
                assert sem.acquire([pool], f"t{i}", 30, waiter="solo")[0]
                sem.release([pool], f"t{i}")
                times.append(time.perf_counter() - start)
            print(f"server: {url}")
            print(
                f"one client: acquire + release median {statistics.median(times) * 1e6:.0f} us, "
                f"p90 {statistics.quantiles(times, n=10)[-1] * 1e6:.0f} us ({args.pairs} pairs)"
            )
            shared = PoolRef("plan:bench:shared", args.clients)
            work = [(url, prefix, shared, args.pairs, f"c{i}") for i in range(args.clients)]
            start = time.perf_counter()
            with multiprocessing.Pool(args.clients) as procs:
                results = procs.map(_client, work)
            elapsed = time.perf_counter() - start
            done = sum(d for d, _ in results)
            refused = sum(r for _, r in results)
            print(
                f"{args.clients} clients, pool of {args.clients}: {done / elapsed:.0f} pairs/s "
                f"({refused} refused), {elapsed:.1f} s, "
                f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cpus"
            )
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
