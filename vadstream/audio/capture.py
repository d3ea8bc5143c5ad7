"""Live microphone capture through sounddevice/PortAudio, as a :class:`vadstream.audio.blocks.Source`.

The PortAudio callback only copies each block into a preallocated :class:`RingBuffer` and
records a (frame position, wall time) anchor; it never blocks and allocates no buffers. The
consumer (``read``, the daemon's processing thread) takes what is buffered, picks a channel or
downmixes, resamples to 16 kHz when the device runs at another rate, and stamps the block.

Device choice: a PortAudio index, or a case-insensitive substring of the device name (an exact
name wins over substrings; several matches are an error listing them). The stream opens at
16 kHz when the device accepts it, else at the device's default rate (44.1/48 kHz are common)
with the anti-aliasing resampler of :mod:`vadstream.stages.resample`; ``SourceSpec.samplerate_hz``
forces a device rate.

Never silent about lost audio: PortAudio input-overflow flags and ring-buffer-full drops are
counted (``stats()``), logged once per burst, and reported as one ``overflow`` status per burst.

Device loss: a stream error, a finished stream, or no callback for ``max(1 s, 10 blocks)``
means the device is gone: ``lost`` is reported, the stream is closed, and every second
PortAudio is terminated and initialised again (the only way it rescans devices; ALSA caches its
configuration per process) and the device looked up again by its name, until it opens. Then
``restored`` is reported and the sample clock skips the outage (see :mod:`vadstream.audio.blocks`).
"""

from __future__ import annotations

import logging
import time

from vadstream.audio.blocks import SAMPLE_RATE_HZ, AudioBlock, Source, SourceError, SourceSpec, to_mono
from vadstream.audio.ringbuffer import RingBuffer
from vadstream.stages.resample import Resampler

log = logging.getLogger("vadstream.audio.capture")

RETRY_INTERVAL_S = 1.0
HEALTH_CHECK_NS = 100_000_000  # ask PortAudio whether the stream is alive at most every 100 ms
OVERFLOW_BURST_GAP_S = 1.0  # overflows closer than this belong to one burst (one log line)
STARTUP_GRACE_S = 5.0  # first callback may take this long (PulseAudio's first stream: ~1.8 s)
CLOCK_DRIFT_LEAK = 5e-4  # how fast the capture-time estimate may drift later (500 ppm)
MAX_DOWNMIX_CHANNELS = 8  # devices reporting more (ALSA 'pulse'/'default': 32) open in stereo


def _describe(devices: list[dict]) -> str:
    return ", ".join(f"{d['index']} '{d['name']}'" for d in devices) or "none"


def input_devices(sd=None) -> list[dict]:
    """PortAudio devices that have input channels (``query_devices`` dicts, with ``index``)."""
    if sd is None:
        import sounddevice as sd
    return [dict(d) for d in sd.query_devices() if d["max_input_channels"] > 0]


def default_input_index(sd=None) -> int | None:
    """PortAudio's default input device index, or None."""
    if sd is None:
        import sounddevice as sd
    try:
        idx = sd.default.device[0]
        if idx is None or idx < 0:
            idx = sd.query_devices(kind="input")["index"]
        return int(idx)
    except Exception:
        return None


def find_input_device(device: str | int | None, sd=None) -> dict:
    """The input device for ``device``: index, name substring (case-insensitive) or None (default).

    Raises :class:`SourceError` naming the available inputs when there is no match, several
    matches, or no input device at all.
    """
    if sd is None:
        import sounddevice as sd
    inputs = input_devices(sd)
    if not inputs:
        raise SourceError("PortAudio found no audio input devices (is a sound card present, /dev/snd "
                          "readable, or a PulseAudio/PipeWire server running?); see `vadstream devices`")
    if device is None or device == "":
        idx = default_input_index(sd)
        for d in inputs:
            if d["index"] == idx:
                return d
        return inputs[0]
    if isinstance(device, int) or (isinstance(device, str) and device.strip().isdigit()):
        idx = int(device)
        for d in inputs:
            if d["index"] == idx:
                return d
        raise SourceError(f"no input device with index {idx}; inputs: {_describe(inputs)}")
    needle = str(device).strip().lower()
    exact = [d for d in inputs if d["name"].lower() == needle]
    if len(exact) == 1:
        return exact[0]
    matches = [d for d in inputs if needle in d["name"].lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SourceError(f"no input device name contains {device!r}; inputs: {_describe(inputs)}")
    raise SourceError(f"input device {device!r} is ambiguous, it matches {_describe(matches)}; "
                      "give its index or a longer part of its name")


class CaptureSource(Source):
    """A live input device; see the module docstring."""

    def __init__(self, spec: SourceSpec):
        super().__init__()
        import sounddevice as sd

        self._sd = sd
        self.spec = spec
        dev = find_input_device(spec.device, sd)
        if spec.channel is not None and spec.channel >= dev["max_input_channels"]:
            raise SourceError(f"channel {spec.channel} does not exist: device {dev['index']} "
                              f"'{dev['name']}' has {dev['max_input_channels']} input channel(s)")
        self._dev = dev
        self.name = f"mic:{dev['name']}"
        self._stream = None
        self._state = "new"  # new | open | lost | closed
        self._channels = 0
        self.rate_hz = 0
        # counters (the callback writes the first two; everything else is the consumer's)
        self._pa_overflows = 0
        self._callbacks = 0
        self._last_cb_ns = 0
        self._last_health_ns = 0  # monotonic ns of the last stream health check
        self._anchor = (0, 0)  # (ring frame position, wall ns of that frame)
        self._stream_finished = False
        self._closing = False
        self._ring: RingBuffer | None = None
        self._resampler: Resampler | None = None
        self._ring_overflow_before = 0  # overflow frames of rings replaced on reconnect
        self._seg_start_sample = 0  # stream sample of the current stream's first output
        self._seg_origin = 0  # ring frame position of the current stream's first frame
        self._seg_out = 0  # 16 kHz samples delivered from the current stream
        self._next_retry = 0.0
        self._lost_wall_ns = 0
        self._lost_sample = 0
        self._losses = 0
        self._ovf_seen = 0
        self._ovf_in_burst = False
        self._ovf_last_change = 0.0
        self._ovf_burst_start = (0, 0)
        self._callbacks_at_open = 0
        self._delivered = 0
        self._last_block_wall_ns = 0
        self._t0_est: float | None = None  # estimated wall ns of the stream's first frame
        self._dev_frames = 0  # frames PortAudio delivered (stored or dropped)
        self._last_cb_wall_ns = 0

    # -- PortAudio thread ------------------------------------------------------------------------
    def _callback(self, indata, frames, time_info, status) -> None:
        now_ns = time.time_ns()
        if status and status.input_overflow:
            self._pa_overflows += 1
        ring = self._ring
        pos = ring._written
        # Capture-time estimate: the block's last frame exists by now, so the stream started at
        # or before `implied` = now - frames_so_far/rate. The smallest such bound is the best
        # estimate; it may rise slowly (clock drift) and is reset by a jump (> 0.5 s: audio lost
        # upstream). PortAudio's own ADC times are not used: with ALSA's pulse plugin they are
        # off by up to 0.5 s on a process's first stream.
        dev_end = self._dev_frames + frames
        implied = now_ns - dev_end * 1e9 / self.rate_hz
        t0 = self._t0_est
        if t0 is None or implied < t0 or implied - t0 > 5e8:
            t0 = implied
        else:
            t0 += min(implied - t0, (now_ns - self._last_cb_wall_ns) * CLOCK_DRIFT_LEAK)
        self._t0_est = t0
        self._anchor = (pos, int(t0 + self._dev_frames * 1e9 / self.rate_hz))
        self._dev_frames = dev_end
        self._last_cb_wall_ns = now_ns
        ring.write(indata)
        self._callbacks += 1
        self._last_cb_ns = time.monotonic_ns()

    def _finished(self) -> None:
        if not self._closing:
            self._stream_finished = True

    # -- opening -----------------------------------------------------------------------------------
    def _channels_for(self, dev: dict) -> int:
        # Open the device's own channel count (virtual devices such as ALSA's 'pulse' claim 32:
        # stereo), even to pick one channel: opening fewer would let a sound server downmix them.
        n = int(dev["max_input_channels"])
        base = n if n <= MAX_DOWNMIX_CHANNELS else 2
        if self.spec.channel is not None:
            return max(base, self.spec.channel + 1)
        return base

    def _try_open(self, dev: dict, rate: int, channels: int):
        sd = self._sd
        block = max(1, int(round(self.spec.block_ms * rate / 1000.0)))
        ring_frames = max(4 * block, int(round(self.spec.ring_s * rate)))
        self._ring = RingBuffer(ring_frames, channels)
        self.rate_hz = rate
        self._stream_finished = False
        stream = sd.InputStream(device=dev["index"], samplerate=rate, channels=channels,
                                dtype="float32", blocksize=block, callback=self._callback,
                                finished_callback=self._finished)
        return stream

    def _open(self, dev: dict) -> None:
        """Open and start ``dev``; raises SourceError with the PortAudio message on failure."""
        sd = self._sd
        channels = self._channels_for(dev)
        if self.spec.samplerate_hz:
            rates = [int(self.spec.samplerate_hz)]
        else:
            rates = [SAMPLE_RATE_HZ]
            native = int(round(dev["default_samplerate"]))
            if native != SAMPLE_RATE_HZ:
                rates.append(native)
        errors = []
        stream = None
        for rate in rates:
            try:
                sd.check_input_settings(device=dev["index"], channels=channels, dtype="float32",
                                        samplerate=rate)
                stream = self._try_open(dev, rate, channels)
                break
            except Exception as exc:  # sd.PortAudioError, ValueError
                errors.append(f"{rate} Hz: {exc}")
        if stream is None:
            raise SourceError(f"cannot open input device {dev['index']} '{dev['name']}' with "
                              f"{channels} channel(s): {'; '.join(errors)}")
        self._channels = channels
        self._resampler = Resampler(self.rate_hz, SAMPLE_RATE_HZ)
        self._seg_origin = 0
        self._seg_out = 0
        self._last_cb_ns = time.monotonic_ns()
        self._last_health_ns = 0
        self._callbacks_at_open = self._callbacks
        self._anchor = (0, time.time_ns())
        self._t0_est = None
        self._dev_frames = 0
        self._last_cb_wall_ns = 0
        try:
            stream.start()
        except Exception as exc:
            self._closing = True
            try:
                stream.close()
            finally:
                self._closing = False
            raise SourceError(f"cannot start input device {dev['index']} '{dev['name']}': {exc}") from None
        self._stream = stream
        self._dev = dev
        self._state = "open"

    def _open_details(self) -> dict:
        return {"device": self._dev["name"], "device_index": self._dev["index"],
                "device_rate_hz": self.rate_hz, "channels": self._channels,
                "channel": self.spec.channel, "resampling": self.rate_hz != SAMPLE_RATE_HZ}

    def start(self) -> None:
        if self._state != "new":
            return
        self._open(self._dev)
        how = ("16 kHz" if self.rate_hz == SAMPLE_RATE_HZ
               else f"{self.rate_hz} Hz, resampled to 16 kHz")
        mix = (f"channel {self.spec.channel}" if self.spec.channel is not None
               else f"{self._channels} ch downmixed" if self._channels > 1 else "mono")
        self._report("opened", f"capturing from {self._dev['index']} '{self._dev['name']}' at {how}, {mix}",
                     **self._open_details())

    # -- health --------------------------------------------------------------------------------------
    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        self._closing = True
        try:
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)
        except Exception as exc:  # noqa: BLE001 - a dead device may fail any call
            log.debug("closing the lost stream failed: %s", exc)
        finally:
            self._closing = False

    def _stalled_s(self) -> float:
        if self._callbacks == self._callbacks_at_open:
            return STARTUP_GRACE_S
        return max(1.0, 10 * self.spec.block_ms / 1000.0)

    def _check_health(self) -> None:
        now_ns = time.monotonic_ns()
        if self._state == "open" and now_ns - self._last_health_ns >= HEALTH_CHECK_NS:
            self._last_health_ns = now_ns
            stream = self._stream
            why = None
            if self._stream_finished:
                why = "the stream stopped"
            elif not stream.active:
                why = "the stream is no longer active"
            elif (now_ns - self._last_cb_ns) / 1e9 > self._stalled_s():
                why = f"no audio for {(now_ns - self._last_cb_ns) / 1e9:.1f} s"
            if why:
                self._lose(why)
        if self._state == "lost" and time.monotonic() >= self._next_retry:
            self._reconnect()

    def _lose(self, why: str) -> None:
        self._lost_sample = self._seg_start_sample + self._seg_out
        self._lost_wall_ns = self._wall_of_output(self._seg_out)
        self._losses += 1
        self._ring_overflow_before += self._ring.overflow_frames if self._ring else 0
        self._close_stream()
        self._state = "lost"
        self._next_retry = time.monotonic()
        self._report("lost", f"input device '{self._dev['name']}' lost ({why}); retrying every "
                     f"{RETRY_INTERVAL_S:g} s", device=self._dev["name"], reason=why,
                     sample_index=self._lost_sample)

    def _reconnect(self) -> None:
        sd = self._sd
        self._next_retry = time.monotonic() + RETRY_INTERVAL_S
        try:
            sd._terminate()
            sd._initialize()
        except Exception as exc:  # noqa: BLE001
            log.debug("PortAudio re-initialisation failed: %s", exc)
            return
        try:
            try:  # same device by name first (indices change on replug), then as configured
                dev = find_input_device(self._dev["name"], sd)
            except SourceError:
                dev = find_input_device(self.spec.device, sd)
            self._open(dev)
        except SourceError as exc:
            log.debug("device not back yet: %s", exc)
            return
        now_ns = time.time_ns()
        gap = max(0, int(round((now_ns - self._lost_wall_ns) * SAMPLE_RATE_HZ / 1e9)))
        self._seg_start_sample = self._lost_sample + gap
        self._report("restored", f"input device '{dev['name']}' is back after "
                     f"{gap / SAMPLE_RATE_HZ:.1f} s; audio resumes at sample {self._seg_start_sample}",
                     resume_sample=self._seg_start_sample, gap_samples=gap, **self._open_details())

    def _check_overflow(self) -> None:
        ring_ovf = self._ring_overflow_before + (self._ring.overflow_frames if self._ring else 0)
        total = self._pa_overflows + ring_ovf
        now = time.monotonic()
        if total != self._ovf_seen:
            if not self._ovf_in_burst:
                self._ovf_in_burst = True
                self._ovf_burst_start = (self._pa_overflows, ring_ovf)
                self._report("overflow", f"audio lost: {ring_ovf} samples dropped (ring buffer full) "
                             f"and {self._pa_overflows} PortAudio input overflows so far; the "
                             "processing thread is not keeping up", **self._overflow_counters())
            self._ovf_seen = total
            self._ovf_last_change = now
        elif self._ovf_in_burst and now - self._ovf_last_change > OVERFLOW_BURST_GAP_S:
            self._ovf_in_burst = False
            pa0, ring0 = self._ovf_burst_start
            log.warning("%s: overflow burst over: %d samples dropped, %d PortAudio overflows in it",
                        self.name, ring_ovf - ring0, self._pa_overflows - pa0)

    def _overflow_counters(self) -> dict:
        ring_ovf = self._ring_overflow_before + (self._ring.overflow_frames if self._ring else 0)
        return {"overflow_samples": ring_ovf, "overflow_seconds": ring_ovf / max(1, self.rate_hz),
                "portaudio_overflows": self._pa_overflows,
                "ring_overflow_events": self._ring.overflow_events if self._ring else 0}

    # -- consumer ------------------------------------------------------------------------------------
    def _wall_of_output(self, out_index: int) -> int:
        """Wall ns of the current stream's 16 kHz output sample ``out_index``."""
        pos, wall = self._anchor
        frame = self._seg_origin + out_index * self.rate_hz / SAMPLE_RATE_HZ
        return int(wall + (frame - pos) * 1e9 / self.rate_hz)

    def read(self, timeout_s: float) -> AudioBlock | None:
        if self._state == "new":
            self.start()
        if self._state == "closed":
            return None
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            self._check_health()
            sleep_s = 0.05  # while lost: how often to look again
            if self._state == "open":
                self._check_overflow()
                want = max(1, int(self.spec.block_ms * self.rate_hz / 1000.0))
                missing = want - self._ring.available
                if missing <= 0:
                    break
                # No lock or event shared with the callback: sleep until the block should be there.
                sleep_s = max(0.001, missing / self.rate_hz + 0.001)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(sleep_s, remaining))
        if self._state != "open" or self._ring.available == 0:
            return None
        frames = self._ring.read()
        y = self._resampler.process(to_mono(frames, self.spec.channel))
        if y.size == 0:
            return None
        # The estimate only improves (moves earlier) by fractions of a ms; keep it monotonic.
        wall = max(self._wall_of_output(self._seg_out), self._last_block_wall_ns + 1)
        self._last_block_wall_ns = wall
        block = AudioBlock(y, self._seg_start_sample + self._seg_out, wall)
        self._seg_out += y.size
        self._delivered += y.size
        return block

    @property
    def finished(self) -> bool:
        return False

    def stats(self) -> dict:
        ring = self._ring
        return {
            "kind": "microphone", "state": self._state,
            "device": self._dev["name"], "device_index": self._dev["index"],
            "device_rate_hz": self.rate_hz, "channels": self._channels, "channel": self.spec.channel,
            "resampling": self.rate_hz != SAMPLE_RATE_HZ,
            "ring_capacity_frames": ring.capacity_frames if ring else 0,
            "ring_available_frames": ring.available if ring else 0,
            "callbacks": self._callbacks, "device_losses": self._losses,
            "samples_delivered": self._delivered,
            "next_sample": self._seg_start_sample + self._seg_out,
            **self._overflow_counters(),
        }

    def close(self) -> None:
        if self._state != "closed":
            self._close_stream()
            self._state = "closed"
