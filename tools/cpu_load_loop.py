"""One competing CPU-bound process for ``tools/benchmark_speed.py --background-load``.

A single-threaded loop of 256x256 float32 matrix products (numpy; the caller sets ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` to 1 in this process's environment) that runs until SIGTERM. It
prints ``ready`` once it loops, and on SIGTERM one JSON line: the products done and the seconds they took. Imports
numpy only, so that it starts in well under a second.
"""

from __future__ import annotations

import json
import signal
import time

import numpy as np

SIZE = 256  # matrix side: 2 * SIZE**3 floating-point operations per product


def main() -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    a = np.random.default_rng(0).random((SIZE, SIZE), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, a, out=out)
    print('ready', flush=True)
    products, start = 0, time.perf_counter()
    while not stop:
        np.matmul(a, a, out=out)
        products += 1
    print(json.dumps({'products': products, 'seconds': time.perf_counter() - start, 'size': SIZE}), flush=True)


if __name__ == '__main__':
    main()
