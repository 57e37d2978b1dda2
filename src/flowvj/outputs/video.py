"""The offline sink: frames in, an MP4 (H.264 + AAC) with the track muxed in, out.

    with VideoWriter("show.mp4", size=(1280, 720), fps=30, audio=samples, audio_rate=44100) as out:
        for frame in frames:           # uint8 (720, 1280, 3) RGB
            out.write(frame)

Frames are encoded as they come (nothing is buffered beyond the encoder's lookahead). The audio
is encoded alongside them, up to the time of the last frame written, so the file is interleaved;
on close the rest is encoded, trimmed or zero-padded to exactly the video's duration.

Sync: video frame i has pts i in a 1/fps time base; audio sample j has pts j in a 1/rate time
base; both start at 0. The AAC encoder's priming (1024 samples) comes out as a first packet at
pts -1024, which the MP4 muxer writes as an edit list, so players (and flowvj's own decoder)
drop it and the first sample heard is sample 0 at t = 0.

The file is written beside the target under a temporary name and renamed over it only when
complete (atomic.py); an exception or Ctrl-C inside the `with` block removes the temporary file
and leaves any previous file at the target as it was.

Colour: RGB is converted to BT.709 limited-range yuv420p and the stream is tagged so, as players
assume for HD video.
"""

import re
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..atomic import atomic_path
from ..errors import UserError

AAC_FRAME = 1024  # samples per AAC frame (the encoder's frame_size)
AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
SIZE_EXPECTED = "expected WIDTHxHEIGHT with positive even numbers, e.g. 1280x720"

# av's enum values for the stream's colour tags (libavutil's AVCOL_*): BT.709, limited ("MPEG") range.
BT709, LIMITED_RANGE = 1, 1


def parse_size(text):
    """'1280x720' -> (1280, 720); anything else is a UserError naming --size."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match:
        raise UserError(f"--size {text}: {SIZE_EXPECTED}")
    return check_size((int(match[1]), int(match[2])), text)


def check_size(size, text=None):
    """(width, height) as ints if both are positive and even (H.264 4:2:0 halves each chroma
    dimension); else a UserError naming --size."""
    try:
        width, height = size
        if int(width) != width or int(height) != height:
            raise ValueError
        width, height = int(width), int(height)
    except (TypeError, ValueError):
        raise UserError(f"--size {text if text is not None else size}: {SIZE_EXPECTED}") from None
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        shown = text if text is not None else f"{width}x{height}"
        raise UserError(f"--size {shown}: {SIZE_EXPECTED} (H.264 yuv420p needs even dimensions)")
    return width, height


def check_fps(fps):
    """fps as a Fraction (30 -> 30, 29.97 -> 2997/100); a UserError naming --fps unless positive."""
    try:
        value = Fraction(fps).limit_denominator(1001)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"--fps {fps}: expected a positive number of frames per second, e.g. 30") from None
    if value <= 0 or value > 1000:
        raise UserError(f"--fps {fps}: expected a positive number of frames per second up to 1000, "
                        "e.g. 30")
    return value


def _check_path(path):
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise UserError(f"{path}: expected an .mp4 output file (H.264 + AAC in MP4)")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; expected an .mp4 output file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{path}: cannot create the folder {path.parent} ({e.strerror or e})") from None
    return path


def audio_channels(audio):
    """Mono (n,) or (n, 1), stereo (n, 2) or (2, n) -> float32 (channels, n), C-contiguous."""
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[None, :]
    elif samples.ndim == 2 and samples.shape[1] in (1, 2) and samples.shape[0] not in (1, 2):
        samples = samples.T
    if samples.ndim != 2 or samples.shape[0] not in (1, 2):
        raise ValueError(f"audio: expected mono (n,) or stereo (n, 2) samples, got shape {np.shape(audio)}")
    if not np.all(np.isfinite(samples)):
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    return np.ascontiguousarray(np.clip(samples, -1.0, 1.0))


class VideoWriter:
    """Writes uint8 RGB frames of `size` = (width, height) at `fps` to an H.264/AAC MP4 at `path`.

    path        the .mp4 to write; its folder is created if missing. Written atomically.
    size        (width, height) in pixels, positive and even.
    fps         frames per second (int, float or Fraction), positive.
    audio       None (a silent video, no audio stream) or float32 samples in [-1, 1], mono (n,)
                or stereo (n, 2), starting at the first frame; trimmed or zero-padded to the
                video's duration (frames written / fps).
    audio_rate  the audio's sample rate in Hz (an AAC rate: 44100, 48000, ...).
    crf         x264 constant rate factor: 0 lossless .. 51 worst; 18 is near visually lossless
                (about 2.7 Mbit/s for the flow's smooth, upscaled frames at 1280x720).
    preset      x264 speed/size trade-off. 'superfast' (the default) encoded the flow's upscaled
                1280x720 frames at 15 ms a frame on a 2-core machine busy with training, against
                40-46 ms for 'veryfast' ('medium': ~70 ms), at twice the file size (~3 Mbit/s at
                crf 18): what lets a render run faster than the music.
    audio_bit_rate  AAC bit rate in bit/s (default 128k mono, 192k stereo).

    Use as a context manager; `write(frame)` per frame. Leaving the block normally finishes the
    file; an exception (or KeyboardInterrupt) abandons it. `close()` / `abort()` do the same
    without `with`.
    """

    def __init__(self, path, size=(1280, 720), fps=30, audio=None, audio_rate=44100, crf=18,
                 preset="superfast", audio_bit_rate=None):
        self.size = check_size(size)
        self.fps = check_fps(fps)
        self.path = _check_path(path)  # last: it may create the folder
        self.frames_written = 0
        self._audio = None if audio is None else audio_channels(audio)
        self.audio_rate = int(audio_rate)
        if self._audio is not None and self.audio_rate not in AAC_RATES:
            raise ValueError(f"audio_rate {audio_rate}: AAC takes one of {AAC_RATES} Hz")
        self._audio_done = 0  # samples sent to the AAC encoder
        self._closed = False

        with ExitStack() as stack:  # on any error below, atomic_path removes the temporary file
            tmp = stack.enter_context(atomic_path(self.path))
            try:
                self._container = av.open(str(tmp), "w", format="mp4",
                                          options={"movflags": "+faststart"})
            except (OSError, av.error.FFmpegError) as e:
                raise UserError(f"{self.path}: cannot write the video ({getattr(e, 'strerror', None) or e})") from None
            stack.callback(self._close_container)
            self._video = self._add_video_stream(crf, preset)
            self._audio_stream = None
            if self._audio is not None:
                self._audio_stream = self._add_audio_stream(audio_bit_rate)
            self._stack = stack.pop_all()
        self._reformatter = av.video.reformatter.VideoReformatter()

    def _add_video_stream(self, crf, preset):
        width, height = self.size
        stream = self._container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": str(preset)}
        context = stream.codec_context
        context.colorspace = context.color_primaries = context.color_trc = BT709
        context.color_range = LIMITED_RANGE
        return stream

    def _add_audio_stream(self, bit_rate):
        channels = self._audio.shape[0]
        stream = self._container.add_stream("aac", rate=self.audio_rate,
                                            layout="mono" if channels == 1 else "stereo")
        stream.bit_rate = int(bit_rate or (128_000 if channels == 1 else 192_000))
        return stream

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self._abandon(exc_type, exc, tb)
        return False

    def write(self, frame):
        """Encode one uint8 RGB frame of shape (height, width, 3)."""
        if self._closed:
            raise ValueError(f"{self.path}: write() after the video was closed")
        width, height = self.size
        frame = np.asarray(frame)
        if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"write: expected a uint8 frame of shape {(height, width, 3)}, "
                             f"got {frame.dtype} {frame.shape}")
        rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        yuv = self._reformatter.reformat(rgb, format="yuv420p", dst_colorspace="ITU709",
                                         dst_color_range="MPEG")
        yuv.pts, yuv.time_base = self.frames_written, 1 / self.fps  # not the stream's: the muxer changes it
        self._container.mux(self._video.encode(yuv))
        self.frames_written += 1
        # keep the audio up to the video: whole AAC frames up to this frame's end
        self._encode_audio_until(self._samples_at(self.frames_written), whole_frames=True)

    @property
    def duration_s(self):
        """Duration of the frames written so far, in seconds."""
        return float(self.frames_written / self.fps)

    def _samples_at(self, frame_count):
        return round(frame_count * self.audio_rate / self.fps)

    def _encode_audio_until(self, end, whole_frames):
        """Send audio samples [done, end) to the encoder in AAC-frame chunks, zero-padded past
        the end of the track; with whole_frames, stop before a chunk that would be partial."""
        if self._audio_stream is None:
            return
        channels, available = self._audio.shape
        layout = "mono" if channels == 1 else "stereo"
        while self._audio_done < end:
            start = self._audio_done
            stop = min(start + AAC_FRAME, end)
            if whole_frames and stop - start < AAC_FRAME:
                break
            chunk = self._audio[:, start:min(stop, available)]
            if chunk.shape[1] < stop - start:
                chunk = np.pad(chunk, ((0, 0), (0, stop - start - chunk.shape[1])))
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
            frame.sample_rate = self.audio_rate
            frame.pts, frame.time_base = start, Fraction(1, self.audio_rate)
            self._container.mux(self._audio_stream.encode(frame))
            self._audio_done = stop

    def close(self):
        """Flush both encoders, finish the MP4 and rename it over the target."""
        if self._closed:
            return
        try:
            if self.frames_written == 0:
                raise ValueError(f"{self.path}: no frames were written; not writing an empty video")
            self._container.mux(self._video.encode(None))
            self._encode_audio_until(self._samples_at(self.frames_written), whole_frames=False)
            if self._audio_stream is not None:
                self._container.mux(self._audio_stream.encode(None))
        except BaseException as e:
            self._abandon(type(e), e, e.__traceback__)
            raise
        self._closed = True
        self._stack.close()  # closes the container (writes the index), then fsync and rename

    def abort(self):
        """Abandon the video: remove the temporary file, leave the target as it was."""
        self._abandon(None, None, None)

    def _abandon(self, exc_type, exc, tb):
        if self._closed:
            return
        self._closed = self._abandoning = True
        if exc_type is None:  # atomic_path only cleans up when an exception passes through it
            exc_type, exc, tb = _Abandoned, _Abandoned(), None
        try:
            self._stack.__exit__(exc_type, exc, tb)
        except _Abandoned:
            pass

    def _close_container(self):
        try:
            self._container.close()
        except (OSError, av.error.FFmpegError):
            if not getattr(self, "_abandoning", False):
                raise  # finishing a good file failed: say so; abandoning one: it is removed anyway


class _Abandoned(Exception):
    """Thrown into atomic_path by abort() so that it removes the temporary file."""
