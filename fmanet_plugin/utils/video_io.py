"""Streaming video decoding and encoding through PyAV (FFmpeg): frame rate, rotation, time range, audio remux.

:class:`VideoReader` decodes one frame at a time (nothing but the current frame is held), turns it upright
according to the stream's display matrix (phone videos) and converts it to uint8 BGR with the stream's own
colour matrix and range. ``start``/``end`` (seconds from the start of the video stream) seek to the nearest
earlier key frame and drop the frames before ``start``.

:class:`VideoWriter` encodes frames as they come (H.264 through libx264 by default, or any FFmpeg encoder
by name) at a constant frame rate, writes to a hidden temporary file next to the target and renames it into
place only when closed successfully. With ``audio_from`` it copies the source's first audio stream packet
by packet (no re-encoding) over the same time range, interleaved with the video as it is written, so the
output plays with the source's duration and sound. Variable-frame-rate sources come out at their average
frame rate; rotated sources come out upright without a rotation tag.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from fmanet_plugin.utils.atomic_io import atomic_path, publish_temp_file

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc, Interpolation

# swscale's default (fast bilinear, truncating) shifts grey levels by 2-4 codes per RGB<->YUV round trip
SWS_FLAGS = (
    Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT | Interpolation.FULL_CHR_H_INP
)

VIDEO_EXTENSIONS = ('.mp4', '.m4v', '.mov', '.mkv', '.avi')
DEFAULT_CODEC = 'libx264'  # H.264; PyAV's wheels ship FFmpeg with libx264
UNSPECIFIED = 2  # AVCOL_SPC/PRI/TRC_UNSPECIFIED


def is_video_path(path: str | Path) -> bool:
    """Whether ``path`` has one of :data:`VIDEO_EXTENSIONS`."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass
class VideoInfo:
    """What a video stream says about itself.

    Attributes:
        fps (Fraction): Average frame rate (``guessed_rate`` when the container has none).
        width (int): Displayed width (after rotation).
        height (int): Displayed height (after rotation).
        rotation (int): Counter-clockwise rotation in degrees applied to decoded frames (0, 90, 180, 270).
        num_frames (int | None): Frame count in the container header, if any (whole video).
        duration (float | None): Video stream duration in seconds, if known.
        has_audio (bool): Whether the container has an audio stream.
        colorspace (int): FFmpeg colour matrix of the stream (``AVColorSpace``).
        color_range (int): FFmpeg colour range (0 unspecified, 1 limited, 2 full).
        color_primaries (int): FFmpeg colour primaries.
        color_trc (int): FFmpeg transfer characteristic.
    """

    fps: Fraction
    width: int
    height: int
    rotation: int
    num_frames: int | None
    duration: float | None
    has_audio: bool
    colorspace: int = 2
    color_range: int = 0
    color_primaries: int = 2
    color_trc: int = 2


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise ValueError(f'cannot open {path} as a video ({type(err).__name__}: {err})') from None


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(image, rotation // 90)) if rotation else image


class VideoReader:
    """Decode the frames of a video file one by one as uint8 BGR (h, w, 3) arrays.

    Args:
        path (str | Path): Video file.
        start (float | None): First time to keep, in seconds from the start of the video. Default: None.
        end (float | None): Time to stop at (exclusive), in seconds. Default: None (to the end).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If it is not a video FFmpeg can read, has no video stream, or ``start >= end``.
    """

    def __init__(self, path: str | Path, start: float | None = None, end: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f'input not found: {path}')
        if start is not None and start < 0:
            raise ValueError(f'{path}: start must be >= 0 seconds, got {start}')
        if start is not None and end is not None and end <= start:
            raise ValueError(f'{path}: end ({end} s) must be after start ({start} s)')
        self.start, self.end = start or 0.0, end
        with _open(self.path) as container:
            if not container.streams.video:
                raise ValueError(f'cannot open {path} as a video: it has no video stream')
            stream = container.streams.video[0]
            fps = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not fps:
                raise ValueError(f'{path}: the video stream has no frame rate')
            rotation, first = 0, None
            for first in container.decode(stream):
                rotation = int(round(first.rotation or 0)) % 360
                break
            if first is None:
                raise ValueError(f'no frame could be decoded from video {path}')
            ctx = stream.codec_context
            width, height = (ctx.height, ctx.width) if rotation in (90, 270) else (ctx.width, ctx.height)
            duration = float(stream.duration * stream.time_base) if stream.duration else None
            if duration is None and container.duration:
                duration = container.duration / av.time_base
            self.info = VideoInfo(
                fps=Fraction(fps),
                width=width,
                height=height,
                rotation=rotation,
                num_frames=stream.frames or None,
                duration=duration,
                has_audio=bool(container.streams.audio),
                colorspace=int(first.colorspace),
                color_range=int(first.color_range),
                color_primaries=int(first.color_primaries),
                color_trc=int(first.color_trc),
            )

    @property
    def fps(self) -> Fraction:
        return self.info.fps

    def expected_count(self) -> int | None:
        """Estimated number of frames :meth:`__iter__` yields (for progress bars), or None if unknown."""
        if self.start == 0 and self.end is None and self.info.num_frames:
            return self.info.num_frames
        if self.info.duration is None:
            return None
        stop = self.info.duration if self.end is None else min(self.end, self.info.duration)
        return max(0, math.ceil((stop - self.start) * self.fps))

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """Yield ``(index, time, frame)``: 0-based index of the kept frame, its time in seconds from the start of
        the video stream, and the upright uint8 BGR image."""
        with _open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = 'AUTO'
            origin = stream.start_time or 0
            # half a frame of slack so that a frame whose time rounds to `start` is kept
            slack = 0.5 / float(self.fps)
            if self.start > 0:
                container.seek(origin + int(self.start / stream.time_base), stream=stream, backward=True)
            index = 0
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                time = float((frame.pts - origin) * stream.time_base)
                if time < self.start - slack:
                    continue
                if self.end is not None and time >= self.end - slack:
                    break
                image = frame.to_ndarray(
                    format='bgr24', src_color_range=frame.color_range or None, interpolation=SWS_FLAGS
                )
                yield index, time, _upright(image, self.info.rotation)
                index += 1
        if index == 0:
            raise ValueError(
                f'no frame could be decoded from video {self.path} between {self.start} s and {self.end} s'
            )


def count_video_frames(path: str | Path) -> int:
    """Number of frames in the first video stream of ``path``, counted from its packets (nothing is decoded).

    Raises:
        ValueError: If ``path`` is not a video FFmpeg can read or has no video stream.
    """
    with _open(Path(path)) as container:
        if not container.streams.video:
            raise ValueError(f'cannot open {path} as a video: it has no video stream')
        return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)


class AudioRemuxer:
    """Feeds the audio packets of a source file into an output container, without decoding them.

    Args:
        source (str | Path): File whose first audio stream is copied.
        output (av.container.OutputContainer): The container being written (no packet muxed yet).
        start (float): Source time (s) that becomes time 0 of the output. Default: 0.
        end (float | None): Source time (s) where copying stops. Default: None (to the end).
    """

    def __init__(self, source: str | Path, output, start: float = 0.0, end: float | None = None) -> None:
        self.input = _open(Path(source))
        self.in_stream = self.input.streams.audio[0]
        self.out_stream = output.add_stream_from_template(self.in_stream)
        self.output, self.start, self.end = output, start, end
        self.time_base = self.in_stream.time_base
        # times are measured from the start of the video stream, as the reader's; audio priming packets
        # before it (negative times) are kept when copying from the beginning
        video = self.input.streams.video[0] if self.input.streams.video else None
        video_start = float(video.start_time * video.time_base) if video is not None and video.start_time else 0.0
        self.origin = int(round(video_start / self.time_base))
        self.shift = self.origin + int(round(start / self.time_base))
        if start > 0:
            self.input.seek(self.shift, stream=self.in_stream, backward=True)
        self.packets = self.input.demux(self.in_stream)
        self.pending = None
        self.done = False

    def mux_until(self, time: float | None) -> None:
        """Mux the source's audio packets that start before output time ``time`` (None: all that are left)."""
        while not self.done:
            packet = self.pending or next(self.packets, None)
            self.pending = None
            if packet is None:
                self.done = True
                break
            if packet.pts is None or packet.size == 0:
                continue  # flush packets of the demuxer
            source_time = float((packet.pts - self.origin) * self.time_base)
            if self.start > 0 and source_time < self.start - 1e-6:
                continue
            if self.end is not None and source_time >= self.end:
                self.done = True
                break
            if time is not None and source_time - self.start > time:
                self.pending = packet
                break
            packet.pts -= self.shift
            packet.dts = packet.pts if packet.dts is None else packet.dts - self.shift
            packet.stream = self.out_stream
            self.output.mux(packet)

    def close(self) -> None:
        self.input.close()


class VideoWriter:
    """Encode uint8 BGR frames into a video file as they come, optionally with a source's audio copied through.

    Args:
        path (str | Path): Output file; the container follows the extension (:data:`VIDEO_EXTENSIONS`).
        fps (Fraction | float): Constant output frame rate.
        codec (str | None): FFmpeg encoder name; ``None`` for H.264 (libx264). Default: None.
        crf (int | None): Constant rate factor for libx264/libx265 (lower is better; 18 is visually lossless
            for most content). Default: 18.
        pix_fmt (str | None): Encoder pixel format; ``None`` picks ``yuv420p`` when the encoder supports it.
        audio_from (str | Path | None): File whose first audio stream is copied (if it has one). Default: None.
        audio_start (float): Source time (s) matching the first written frame. Default: 0.
        audio_end (float | None): Source time (s) where the copied audio ends. Default: None.
        color (VideoInfo | None): Colour matrix/range/primaries/transfer to encode with and tag (a source's
            :attr:`VideoReader.info`); ``None`` or unspecified values use BT.709, limited range.

    Raises:
        ValueError: For an unknown extension or encoder, or frames the encoder cannot take (e.g. odd sizes
            for 4:2:0 encoders).
    """

    def __init__(
        self,
        path: str | Path,
        fps: Fraction | float,
        codec: str | None = None,
        crf: int | None = 18,
        pix_fmt: str | None = None,
        audio_from: str | Path | None = None,
        audio_start: float = 0.0,
        audio_end: float | None = None,
        color: VideoInfo | None = None,
    ) -> None:
        self.path = Path(path)
        if not is_video_path(self.path):
            raise ValueError(f'output {path}: not a video extension ({", ".join(VIDEO_EXTENSIONS)})')
        self.codec = codec or DEFAULT_CODEC
        if self.codec not in av.codecs_available:
            raise ValueError(f'--codec {self.codec!r} is not an FFmpeg encoder available in PyAV')
        self.fps = Fraction(fps).limit_denominator(1001000)
        self.crf, self.pix_fmt = crf, pix_fmt
        self.audio_from, self.audio_start, self.audio_end = audio_from, audio_start, audio_end
        self.color = color
        self.container = self.stream = self.audio = self.tmp = None
        self.count = 0

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f'.{self.path.name}.', suffix=self.path.suffix)
        os.close(fd)
        self.container = av.open(self.tmp, mode='w')
        stream = self.container.add_stream(self.codec, rate=self.fps)
        supported = [f.name for f in stream.codec_context.codec.video_formats or []]
        pix_fmt = self.pix_fmt or ('yuv420p' if 'yuv420p' in supported or not supported else supported[0])
        if pix_fmt == 'yuv420p' and (width % 2 or height % 2):
            raise ValueError(
                f'{self.path}: {self.codec} with 4:2:0 chroma needs even frame sizes, got {width}x{height}'
            )
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = self.time_base = 1 / self.fps
        if self.crf is not None and self.codec in ('libx264', 'libx265'):
            stream.options = {'crf': str(self.crf)}
        ctx = stream.codec_context
        color = self.color
        # a source with an unspecified (or RGB) matrix is written as tagged BT.709, limited range
        unspecified = color is None or color.colorspace in (UNSPECIFIED, 0)
        self.colorspace = Colorspace.ITU709 if unspecified else color.colorspace
        ctx.colorspace = self.colorspace
        ctx.color_range = ColorRange.MPEG if color is None or not color.color_range else color.color_range
        keep_primaries = not unspecified and color.color_primaries != UNSPECIFIED
        ctx.color_primaries = color.color_primaries if keep_primaries else ColorPrimaries.BT709
        ctx.color_trc = color.color_trc if not unspecified and color.color_trc != UNSPECIFIED else ColorTrc.BT709
        self.stream = stream
        if self.audio_from is not None and _has_audio(self.audio_from):
            codec_name = _open(Path(self.audio_from)).streams.audio[0].codec_context.name
            if codec_name not in self.container.supported_codecs:
                raise ValueError(
                    f'{self.path}: the {self.path.suffix} container cannot hold the source audio ({codec_name}); '
                    'use .mkv or drop the audio'
                )
            self.audio = AudioRemuxer(self.audio_from, self.container, self.audio_start, self.audio_end)

    def write(self, frame: np.ndarray) -> None:
        """Encode one uint8 BGR (h, w, 3) frame."""
        if self.container is None:
            self._open(frame.shape[1], frame.shape[0])
        elif (frame.shape[1], frame.shape[0]) != (self.stream.width, self.stream.height):
            raise ValueError(
                f'{self.path}: frame {self.count} is {frame.shape[1]}x{frame.shape[0]}, '
                f'the video {self.stream.width}x{self.stream.height}'
            )
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format='bgr24')
        video_frame = video_frame.reformat(
            format=self.stream.pix_fmt,
            dst_colorspace=self.colorspace,
            dst_color_range=self.stream.codec_context.color_range,
            interpolation=SWS_FLAGS,
        )
        video_frame.pts = self.count
        # the encoder's time base: the muxer replaces the stream's (e.g. 1/10240 in MP4) once the header is out
        video_frame.time_base = self.time_base
        self._mux(self.stream.encode(video_frame))
        self.count += 1

    def _mux(self, packets) -> None:
        for packet in packets:
            if self.audio is not None and packet.pts is not None:
                self.audio.mux_until(float(packet.pts * packet.time_base))
            self.container.mux(packet)

    def close(self, success: bool = True) -> None:
        """Flush the encoder and rename the file into place if ``success``; otherwise delete the partial file."""
        try:
            if self.container is not None:
                if success:
                    self._mux(self.stream.encode(None))
                    if self.audio is not None:
                        self.audio.mux_until(None)
                if self.audio is not None:
                    self.audio.close()
                self.container.close()
            if success and self.tmp is not None:
                publish_temp_file(self.tmp, str(self.path))
        finally:
            if self.tmp is not None and os.path.exists(self.tmp):
                os.remove(self.tmp)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(success=exc_type is None)


def _has_audio(path: str | Path) -> bool:
    with _open(Path(path)) as container:
        return bool(container.streams.audio)


def write_video_with_tone(
    path: str | Path, frames: Iterable[np.ndarray], fps: int, crf: int | None = None, tone_hz: float = 440.0
) -> int:
    """Encode uint8 BGR frames (h, w, 3) as H.264 with a mono AAC sine tone of the same length, atomically.

    Test and demo footage with an audio track (``tools/make_demo_video.py``, ``tools/benchmark_video_memory.py``).

    Args:
        path (str | Path): Output video (e.g. ``.mp4``).
        frames (Iterable[np.ndarray]): The frames, all of one size; consumed as they come.
        fps (int): Frame rate.
        crf (int | None): x264 constant rate factor; None: the encoder's default. Default: None.
        tone_hz (float): Frequency of the tone. Default: 440.

    Returns:
        int: The number of frames written.
    """
    rate, count = 48000, 0
    with atomic_path(path) as tmp, av.open(tmp, 'w') as container:  # the temporary name keeps the extension
        video = audio = None
        for image in frames:
            if video is None:
                video = container.add_stream('libx264', rate=fps)
                video.width, video.height, video.pix_fmt = image.shape[1], image.shape[0], 'yuv420p'
                if crf is not None:
                    video.options = {'crf': str(crf)}
                audio = container.add_stream('aac', rate=rate)
                audio.layout = 'mono'
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format='bgr24').reformat(format='yuv420p')
            frame.pts = count
            container.mux(video.encode(frame))
            count += 1
        if video is None:
            raise ValueError(f'write_video_with_tone: no frame to write to {path}')
        total = round(count / fps * rate)
        tone = (0.2 * np.sin(2 * np.pi * tone_hz * np.arange(total) / rate)).astype(np.float32)
        for start in range(0, total, 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format='flt', layout='mono')
            chunk.sample_rate, chunk.pts = rate, start
            container.mux(audio.encode(chunk))
        container.mux(audio.encode(None))
        container.mux(video.encode(None))
    return count
