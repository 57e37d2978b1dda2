"""The render's decode on every engine: this process, local worker processes, and Ray actors on a
real local cluster of two workers. All give the same frames for the same latents, in order, and a
render through the CLI is the same video whichever engine decoded it."""

import av
import numpy as np
import pytest

from flowvj.show.decode_pool import open_pool
from flowvj.images import load_show_images
from flowvj.flow import load_model
from flowvj.show.generator import Generator

GEN_SIZE = (48, 28)


@pytest.fixture(scope="module")
def latents():
    """Latents of 11 frames between two demo images at GEN_SIZE: 3 batches, the last one short."""
    generator = Generator(load_model(None), size=GEN_SIZE)
    z = generator.encode(load_show_images(None, GEN_SIZE)[:2])
    t = np.linspace(0, 1, 11, dtype=np.float32)[:, None, None, None]
    return (1 - t) * z[0] + t * z[1], generator


def decoded(engine, latents, workers=2):
    zs, generator = latents
    batches = [zs[i:i + 4] for i in range(0, len(zs), 4)]
    with open_pool(None, GEN_SIZE, workers, engine, generator=generator if engine == "inline" else None) as pool:
        return np.concatenate(list(pool.map(batches)))


def test_local_processes_decode_the_same_frames_as_this_process_in_order(latents):
    inline = decoded("inline", latents)
    assert inline.shape == (11, GEN_SIZE[1], GEN_SIZE[0], 3) and inline.dtype == np.uint8
    assert np.abs(np.diff(inline.astype(int), axis=0)).mean() > 0.5     # the frames differ, in order
    assert np.array_equal(decoded("local", latents), inline)


@pytest.mark.heavy
def test_ray_actors_on_a_local_two_worker_cluster_decode_the_same_frames(latents):
    assert np.array_equal(decoded("ray", latents), decoded("inline", latents))


def frames_of(path):
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.heavy
def test_a_render_is_the_same_video_on_local_workers_and_on_ray(run_flowvj, tmp_path):
    videos = {}
    for engine in ("inline", "local", "ray"):
        out = tmp_path / f"{engine}.mp4"
        result = run_flowvj("render", "-o", out, "--duration", "1.5", "--size", "192x108", "--gen-size",
                            "64x36", "--decode-engine", engine, "--decode-workers", "2", timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        videos[engine] = frames_of(out)
    assert len(videos["inline"]) == 45
    assert np.array_equal(videos["local"], videos["inline"])
    assert np.array_equal(videos["ray"], videos["inline"])
