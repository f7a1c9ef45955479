"""Pin BLAS to one thread per process: implicit and numpy otherwise oversubscribe the cores."""

from __future__ import annotations

import threading
from typing import Any

from threadpoolctl import threadpool_info, threadpool_limits

__all__ = ["blas_thread_counts", "pin_blas_threads"]

_lock = threading.Lock()
_pinned = False
_limiter: Any = None


def pin_blas_threads() -> None:
    """Limit every BLAS (OpenBLAS, MKL, BLIS) that giftrec uses to one thread, process-wide.

    Two web workers that each left OpenBLAS at its default thread count served a top-k endpoint 13x
    slower than with one thread each; implicit's ALS also warns when OpenBLAS runs its own pool.

    Idempotent: after the first call it returns at once. threadpoolctl can only limit libraries that are
    already loaded, so the first call imports numpy, SciPy's linear algebra and implicit's CPU models
    (which bring in their BLAS) before applying the limit. Call it in every fit and serving path.
    implicit's own thread pool is separate and set through each model's ``num_threads`` parameter.
    """
    global _pinned, _limiter
    if _pinned:
        return
    with _lock:
        if _pinned:
            return
        import implicit.cpu.als  # noqa: F401
        import numpy.linalg  # noqa: F401
        import scipy.linalg  # noqa: F401

        # Not used as a context manager: the limit stays for the life of the process.
        _limiter = threadpool_limits(limits=1, user_api="blas")
        _pinned = True


def blas_thread_counts() -> dict[str, int]:
    """Current thread count of each loaded BLAS library, keyed by its file path (for health checks)."""
    return {
        str(info.get("filepath")): int(info.get("num_threads", 0))
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    }
