"""One torchrun process of test_torchrun_ranks_hold_identical_weights.

usage: python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_worker.py DATA OUT STEPS

Trains the tiny preset at 8 px for STEPS steps of 8 images with flowvj.lab.train.train, then writes
this rank's weights to OUT/rank{RANK}.pt and the pixels of its first training batch to
OUT/rank{RANK}-first-batch.npy. The batch is seen by wrapping flowvj.lab.train.dequantise, which
records its input and hands it on unchanged; the training itself is untouched.
"""

import os
import sys
from pathlib import Path

import numpy as np
import torch

from flowvj.lab import train as train_module
from flowvj.lab.train import TrainOptions, train


def main():
    data, out, steps = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    rank = int(os.environ["RANK"])
    out.mkdir(parents=True, exist_ok=True)

    first_batch = []
    dequantise = train_module.dequantise

    def recording_dequantise(pixels_uint8, generator):
        if not first_batch:
            first_batch.append(np.array(pixels_uint8))
        return dequantise(pixels_uint8, generator)

    train_module.dequantise = recording_dequantise
    model, state = train(TrainOptions(data=data, out=str(out / "run"), preset="tiny", image_size=8,
                                      batch_size=8, max_steps=steps, threads=1))
    assert state["step"] == steps, state
    torch.save(model.state_dict(), out / f"rank{rank}.pt")
    np.save(out / f"rank{rank}-first-batch.npy", first_batch[0])


if __name__ == "__main__":
    main()
