"""The show plans its own threads, so the libraries under it each get one.

A live show on two cores runs three busy threads of its own: the loop (audio analysis,
navigation, outputs), the decode (ONNX Runtime) and the compose (OpenCV). Each library left to
itself starts a pool the size of the machine, and OpenBLAS's workers (numpy's matmuls: the
analyzer's band sums, the navigator's blends) spin while they wait for work: on the 2-core dev
VM they took most of a core, the loop's thread ran at 100 %, and a show at 192x108, 30 fps with
the compositor drew 27.5 fps, p95 48.7 ms; with BLAS on one thread, 29.9 fps, p95 35.2 ms
(benchmarks/live/blas_threads.py). numpy has no call of its own for this, and the variable
OPENBLAS_NUM_THREADS only counts for a library loaded after it is set; threadpoolctl (the
scikit-learn project's) sets the pools already loaded, at run time. Both are needed: numpy,
scipy and OpenCV each bring an OpenBLAS of their own, loaded at different moments (a limit set
once numpy had loaded left scipy's and OpenCV's at 2).
"""

import os


def one_thread_each():
    """torch and the BLAS under numpy on one thread each, from here on in this process (OpenCV
    is set where it is first imported: compose.opencv). Returns the BLAS pools as they were
    ([{"internal_api", "num_threads"}]), for the record."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    torch.set_num_threads(1)
    os.environ["OPENBLAS_NUM_THREADS"] = "1"     # for the BLAS libraries loaded from here on
    before = [{"internal_api": pool["internal_api"], "num_threads": pool["num_threads"]}
              for pool in threadpool_info() if pool["user_api"] == "blas"]
    threadpool_limits(1, user_api="blas")
    return before


def blas_threads():
    """The most threads any BLAS pool loaded in this process may use now (the --stats JSON
    reports it, so a run shows the limit held); 0 when none is loaded."""
    from threadpoolctl import threadpool_info

    return max((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"), default=0)
