"""Offline decode spread over processes: the render's one costly step, done in batches.

A render first navigates the whole track (cheap and sequential: each frame's latent depends on
the one before), then decodes those latents in batches, which is where the time goes (batch > 1
runs the flow's convolutions far more efficiently than batch 1), then upscales and encodes them
in order. The decode of one batch depends on nothing else, so batches go to workers:

    with open_pool(model_path, gen_size, workers=2, engine="local") as pool:
        for frames in pool.map(batches_of_latents):     # in order, at most 2 x workers in flight
            ...

- engine "inline": this process decodes (workers ignored): no start-up cost, for short renders.
- engine "local": `workers` processes of this machine (concurrent.futures, spawn), each with
  its own Generator on one thread.
- engine "ray": Ray actors (the optional extra, `pip install flowvj[ray]`): on the cluster at
  RAY_ADDRESS if set, else a local cluster of `workers` CPUs started for the render. Long renders
  at large sizes outgrow one machine; Ray already schedules, ships and restarts work across
  machines, so flowvj has no cluster code of its own.
Every engine decodes the same latents with the same batch size into the same frames, so a render
stays deterministic for a seed whatever runs it.
"""

import collections
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ..errors import UserError
from ..flow import load_model
from .generator import Generator

ENGINES = ("inline", "local", "ray")
_worker = None   # the Generator of a pool process (set by _init_worker)


def _make_generator(model_path, gen_size, options):
    import torch


    torch.set_num_threads(1)
    return Generator(load_model(model_path), size=gen_size, threads=1, **options)


def _init_worker(model_path, gen_size, options):
    global _worker
    _worker = _make_generator(model_path, gen_size, options)


def _decode_counting(generator, zs):
    """(frames, how many of them were non-finite and held) for one batch."""
    before = generator.bad_frames
    frames = generator.decode_batch(zs)
    return frames, generator.bad_frames - before


def _decode_in_worker(zs):
    return _decode_counting(_worker, zs)


class _Inline:
    def __init__(self, model_path, gen_size, generator=None, options=None):
        self.generator = generator or _make_generator(model_path, gen_size, options or {})

    def submit(self, zs):
        return self.generator.decode_batch(zs)

    @staticmethod
    def result(handle):
        return handle

    @property
    def bad_frames(self):
        return self.generator.bad_frames

    def close(self):
        pass


class _Local:
    def __init__(self, model_path, gen_size, workers, options):
        import multiprocessing

        # spawn: a forked torch/ONNX Runtime process can deadlock on the parent's thread pools
        self.executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_init_worker, initargs=(model_path, gen_size, options))
        self.bad_frames = 0

    def submit(self, zs):
        return self.executor.submit(_decode_in_worker, zs)

    def result(self, handle):
        frames, bad = handle.result()
        self.bad_frames += bad
        return frames

    def close(self):
        self.executor.shutdown(wait=True, cancel_futures=True)


class _Ray:
    def __init__(self, model_path, gen_size, workers, options):
        try:
            import ray
        except ImportError:
            raise UserError("--decode-engine ray needs Ray: pip install 'flowvj[ray]'") from None
        self.ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            address = os.environ.get("RAY_ADDRESS")
            ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)

        @ray.remote(num_cpus=1)
        class Decoder:
            def __init__(self, model_path, gen_size, options):
                self.generator = _make_generator(model_path, gen_size, options)

            def decode(self, zs):
                return _decode_counting(self.generator, zs)

        self.actors = [Decoder.remote(model_path, gen_size, options) for _ in range(workers)]
        self._next, self.bad_frames = 0, 0

    def submit(self, zs):
        actor = self.actors[self._next % len(self.actors)]
        self._next += 1
        return actor.decode.remote(zs)

    def result(self, handle):
        frames, bad = self.ray.get(handle)
        self.bad_frames += bad
        return frames

    def close(self):
        for actor in self.actors:
            self.ray.kill(actor)
        if self._started:
            self.ray.shutdown()


class DecodePool:
    """map(batches) -> decoded uint8 frame batches, in order, with a bounded number in flight
    (so a long render never holds more than a few batches of latents or frames in memory)."""

    def __init__(self, backend, in_flight):
        self.backend, self.in_flight = backend, max(1, int(in_flight))

    def map(self, batches):
        pending = collections.deque()
        for zs in batches:
            pending.append(self.backend.submit(np.ascontiguousarray(zs, dtype=np.float32)))
            if len(pending) >= self.in_flight:
                yield self.backend.result(pending.popleft())
        while pending:
            yield self.backend.result(pending.popleft())

    @property
    def bad_frames(self):
        return self.backend.bad_frames

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.backend.close()


def open_pool(model_path, gen_size, workers=1, engine="inline", generator=None, **options):
    """A DecodePool of `workers` on `engine` (see the module docstring); `options` (precision,
    device) go to each worker's Generator."""
    if engine not in ENGINES:
        raise UserError(f"--decode-engine {engine}: expected one of {', '.join(ENGINES)}")
    if engine == "inline":
        return DecodePool(_Inline(model_path, gen_size, generator, options), 1)
    workers = max(1, int(workers))
    kind = _Local if engine == "local" else _Ray
    backend = kind(model_path, gen_size, workers, options)
    return DecodePool(backend, 2 * workers)
