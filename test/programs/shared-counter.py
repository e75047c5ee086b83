"""
A parent and forked workers counting in memory they share: a
multiprocessing Array (a shared mapping of a deleted file, guarded by a
semaphore in shared memory) and an anonymous shared mapping (mmap of -1).
Each round the parent bumps `round` in both; every worker, seeing a new
round, adds one to its own slot in both and acknowledges. The parent logs
"ROUND TOTAL-ARRAY TOTAL-MMAP" once every worker has acknowledged, so the
totals are WORKERS*ROUND when every write by one process was seen by the
others. DIR/stop ends it (exit 0); a wrong total ends it with 3.
"""
import mmap
import multiprocessing as mp
import os
import struct
import sys
import time

WORKERS = 3
d = sys.argv[1]
arr = mp.Array("q", WORKERS + 1)  # [round, worker slots...], with its lock
anon = mmap.mmap(-1, 8 * (WORKERS + 1))  # MAP_SHARED | MAP_ANONYMOUS
acks = mp.Array("q", WORKERS, lock=False)


def get(i):
    return struct.unpack_from("q", anon, 8 * i)[0]


def put(i, v):
    struct.pack_into("q", anon, 8 * i, v)


def worker(w):
    seen = 0
    while True:
        r = arr[0]
        if r < 0:
            return
        if r != seen:
            with arr.get_lock():
                arr[w + 1] += 1
            put(w + 1, get(w + 1) + 1)
            seen = r
            acks[w] = r
        time.sleep(0.005)


procs = [mp.Process(target=worker, args=(w,)) for w in range(WORKERS)]
for p in procs:
    p.start()
out = open(os.path.join(d, "out"), "a", buffering=1)
r = 0
while not os.path.exists(os.path.join(d, "stop")):
    r += 1
    with arr.get_lock():
        arr[0] = r
    put(0, r)
    while any(acks[w] != r for w in range(WORKERS)):
        time.sleep(0.002)
    total_arr = sum(arr[1:])
    total_anon = sum(get(i + 1) for i in range(WORKERS))
    out.write("%d %d %d\n" % (r, total_arr, total_anon))
    if total_arr != WORKERS * r or total_anon != WORKERS * r:
        sys.exit(3)
    time.sleep(0.02)
arr[0] = -1
for p in procs:
    p.join()
sys.exit(0 if all(p.exitcode == 0 for p in procs) else 4)
