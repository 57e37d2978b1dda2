"""Decoding audio files to mono float32 at the analysis rate, and refusing broken ones.

soundfile (libsndfile) reads wav, flac, ogg/vorbis, opus and mp3; PyAV (FFmpeg) reads everything
else (m4a/aac, wma, ...). An unreadable, empty or truncated file is a one-line UserError naming
it: a show should fail before it starts, not go silent half-way through a track.
"""

import math
import os
from pathlib import Path

import numpy as np

from ..errors import UserError

ANALYSIS_RATE = 44100
# Every AAC-LC encoder delays its output by at least one 1024-sample frame (the MDCT overlap);
# FFmpeg's encoder by exactly that. Files that declare their priming get it trimmed by FFmpeg;
# for AAC that declares none (e.g. written from frames without timestamps) this is the guess.
AAC_UNDECLARED_PRIMING = 1024
FORMATS = "wav, flac, ogg, opus, mp3, m4a/aac or another format FFmpeg reads"


class _Unreadable(Exception):
    """One decoder could not read the file; `recognised` says whether it knew the format."""
    def __init__(self, reason, recognised=True):
        super().__init__(reason)
        self.recognised = recognised


def decode(path, rate=ANALYSIS_RATE):
    """Decode an audio file to mono float32 at `rate` Hz (channels averaged).

    soundfile (libsndfile) reads wav, flac, ogg/vorbis, opus and mp3; PyAV (FFmpeg) reads
    everything else (m4a/aac, wma, ...). An unreadable, empty or truncated file is a UserError
    naming it. Resampling uses scipy's resample_poly: an exact rational ratio with a zero-phase
    (centred) filter over the whole signal, so no delay or edge flush shifts beats in time.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such audio file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes); expected audio ({FORMATS})")
    try:
        samples, native_rate = _check_complete(path, _decode_soundfile)
    except _Unreadable as sf_error:
        try:
            samples, native_rate = _check_complete(path, _decode_pyav)
        except _Unreadable as av_error:
            reason = sf_error if sf_error.recognised else av_error
            raise UserError(f"{path}: cannot decode audio ({reason}); expected {FORMATS}") from None
    if len(samples) == 0:
        raise UserError(f"{path}: contains no audio samples; expected audio ({FORMATS})")
    return resample(samples, native_rate, rate)


def resample(samples, from_rate, to_rate):
    """Polyphase resampling by the exact ratio to_rate/from_rate (integer rates)."""
    from_rate, to_rate = int(round(from_rate)), int(round(to_rate))
    if from_rate == to_rate:
        return np.asarray(samples, dtype=np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(from_rate, to_rate)
    return resample_poly(samples, to_rate // g, from_rate // g).astype(np.float32)


def _truncated(path, detail):
    return UserError(f"{path}: truncated or corrupt audio file ({detail}); re-export or "
                     "re-download it")


def _decode_soundfile(path):
    from .devices import quiet_stderr

    import soundfile as sf

    try:  # libmpg123 prints "Note: Illegal Audio-MPEG-Header" lines of its own for a bad mp3
        with quiet_stderr(), sf.SoundFile(str(path)) as f:
            declared, native_rate = f.frames, f.samplerate
            data = f.read(dtype="float32", always_2d=True)
    except sf.SoundFileError as e:
        reason = getattr(e, "error_string", "") or str(e)
        # libsndfile says "File does not exist" of an mp3 it cannot sync to: not its format
        recognised = "not recognised" not in reason and "does not exist" not in reason
        raise _Unreadable(reason.strip().removeprefix("Error : ").rstrip("."), recognised) from None
    if len(data) < declared:
        raise _truncated(path, f"{len(data)} of {declared} samples decoded")
    return data.mean(axis=1), native_rate


def _check_complete(path, decode_one):
    """Decode with `decode_one(path)`, refusing files whose container says they were longer:
    libsndfile clamps a cut WAV's length to what is there, and a cut or garbled Ogg stream
    decodes as a shorter track without an error."""
    if not _riff_data_complete(path):
        raise _truncated(path, "the WAV data chunk is shorter than its header says")
    ogg = _ogg_tail(path)
    if ogg is not None and not ogg[0]:
        raise _truncated(path, "the last Ogg page is cut off or not marked end-of-stream")
    samples, native_rate = decode_one(path)
    if ogg is not None:  # the last page's granule position counts the samples (Opus: at 48 kHz)
        declared = ogg[1] * native_rate / 48000 if _is_opus(path) else ogg[1]
        if len(samples) < 0.99 * declared - 4096:
            raise _truncated(path, f"{len(samples)} of {declared:.0f} samples decoded")
    return samples, native_rate


def _riff_data_complete(path):
    """False when a RIFF/WAVE file's data chunk claims more bytes than the file holds
    (libsndfile silently clamps its frame count to what is there)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(4) != b"RIFF" or f.read(8)[4:] != b"WAVE":
            return True
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            header = f.read(8)
            chunk_size = int.from_bytes(header[4:], "little")
            if header[:4] == b"data":
                return chunk_size in (0, 0xFFFFFFFF) or pos + 8 + chunk_size <= size
            pos += 8 + chunk_size + (chunk_size & 1)
    return True


def _ogg_tail(path):
    """For an Ogg file: (whether its last page is whole and flagged end-of-stream, that page's
    granule position); None for other files. A cut-off Ogg file otherwise decodes as a shorter
    track, and a garbled one can stop early without an error: the last page still says how long
    the stream was."""
    with open(path, "rb") as f:
        if f.read(4) != b"OggS":
            return None
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 70000))  # a page is at most 65,307 bytes
        tail = f.read()
    i = tail.rfind(b"OggS")
    while i >= 0:
        header = tail[i:i + 27]
        if len(header) == 27 and header[4] == 0:
            lacing = tail[i + 27:i + 27 + header[26]]
            if len(lacing) == header[26] and i + 27 + len(lacing) + sum(lacing) == len(tail):
                return bool(header[5] & 0x04), int.from_bytes(header[6:14], "little", signed=True)
        i = tail.rfind(b"OggS", 0, i)
    return False, -1


def _is_opus(path):
    with open(path, "rb") as f:
        return b"OpusHead" in f.read(200)


def _decode_pyav(path):
    """Decode the first audio stream with FFmpeg, trimming encoder priming and end padding."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise _Unreadable("it has no audio stream")
            stream = container.streams.audio[0]
            to_float = av.AudioResampler(format="fltp")  # sample format only; rate and layout kept
            chunks, first_pts, native_rate = [], None, stream.codec_context.sample_rate
            for packet in container.demux(stream):
                if first_pts is None and packet.pts is not None:
                    first_pts = packet.pts
                for frame in packet.decode():
                    native_rate = frame.sample_rate
                    chunks += [f.to_ndarray().mean(axis=0) for f in to_float.resample(frame)]
            chunks += [f.to_ndarray().mean(axis=0) for f in to_float.resample(None)]
            codec, duration, time_base = stream.codec_context.name, stream.duration, stream.time_base
    except av.error.FFmpegError as e:
        raise _Unreadable((e.strerror or str(e)).strip()) from None
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    # A negative first timestamp means the container declared its priming and FFmpeg dropped it.
    priming = AAC_UNDECLARED_PRIMING if codec == "aac" and (first_pts or 0) >= 0 else 0
    samples = samples[priming:]
    if duration and time_base:
        declared = round(duration * time_base * native_rate) - priming
        if len(samples) < declared - max(4096, declared // 100):
            raise _truncated(path, f"{len(samples)} of {declared} samples decoded")
        samples = samples[:declared]  # the encoder's end padding
    return samples, native_rate
