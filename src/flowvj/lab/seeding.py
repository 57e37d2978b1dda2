"""Random streams that are a pure function of a seed and a few keys, the same in every process:
training (DDP ranks see the same epoch order), evaluation and the judges repeat exactly."""

import hashlib

import torch


def step_generator(seed, *keys):
    """A torch generator whose stream is a pure function of (seed, keys), in every process.

    Python's hash() of strings changes per process, so the key is hashed with blake2b.
    """
    digest = hashlib.blake2b(repr((seed,) + keys).encode(), digest_size=8).digest()
    g = torch.Generator()
    g.manual_seed(int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF)
    return g
