"""The Nordic Power Profiler Kit II through the ``ppk2-api`` package (imported when a monitor opens).

Source-meter mode: the PPK2 supplies the board at ``voltage_mv`` and measures the current it draws.
Ampere-meter mode: the PPK2 sits in series with the board's own supply; ``voltage_mv`` is then that
supply's voltage, used for the energy (the PPK2 does not measure it). While a window is open a thread
drains the PPK2's sample stream (about 100 kS/s of current in µA) and sums it; charge = sum / rate and
energy = charge x voltage. The window covers what the board did between ``start`` and ``stop``: open it
right before a run request and close it when the answer arrives.
"""
from __future__ import annotations

import threading
import time

from . import Measurement, PowerMonitorUnavailable

SAMPLE_RATE_HZ = 100_000   # the PPK2's sampling rate


def ppk2_ports() -> list[str]:
    """Serial ports of the PPK2s connected now (empty without one, or without the ppk2-api package)."""
    try:
        from ppk2_api.ppk2_api import PPK2_API
    except ImportError:
        return []
    return list(PPK2_API.list_devices())


class PPK2Monitor:
    """A window-energy monitor on an opened PPK2 (``api``: a ``ppk2_api.PPK2_API`` or anything with its
    ``start_measuring``, ``stop_measuring``, ``get_data`` and ``get_samples`` methods)."""

    def __init__(self, api, voltage_mv: int = 3300, source_meter: bool = True, port: str = "?",
                 poll_s: float = 0.01):
        self.api = api
        self.voltage_mv = voltage_mv
        self.source_meter = source_meter
        self.port = port
        self.poll_s = poll_s
        self.name = f"ppk2:{port}"
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._sum_ua = 0.0
        self._count = 0
        self._error: BaseException | None = None
        self._t0 = 0.0

    @classmethod
    def open(cls, port: str | None = None, voltage_mv: int = 3300, source_meter: bool = True) -> "PPK2Monitor":
        """Open the PPK2 on ``port`` (the only one connected when None) and configure it; in source-meter
        mode the board is powered on at ``voltage_mv``."""
        try:
            from ppk2_api.ppk2_api import PPK2_API
        except ImportError as e:
            raise PowerMonitorUnavailable("the ppk2-api package is not installed: `pip install ppk2-api`") from e
        if port is None:
            ports = PPK2_API.list_devices()
            if not ports:
                raise PowerMonitorUnavailable("no PPK2 connected (ppk2_api.PPK2_API.list_devices() is empty)")
            port = ports[0]
        api = PPK2_API(port, timeout=1, write_timeout=1)
        api.get_modifiers()   # the PPK2's calibration, needed to convert its ADC values
        if source_meter:
            api.use_source_meter()
        else:
            api.use_ampere_meter()
        api.set_source_voltage(voltage_mv)
        if source_meter:
            api.toggle_DUT_power("ON")
        return cls(api, voltage_mv, source_meter, port)

    def _drain_once(self) -> None:
        data = self.api.get_data()
        if data:
            samples, _digital = self.api.get_samples(data)
            self._sum_ua += float(sum(samples))
            self._count += len(samples)

    def _pump(self) -> None:
        try:
            while not self._stop.is_set():
                self._drain_once()
                time.sleep(self.poll_s)
        except BaseException as e:   # reported by stop(), not lost in the thread
            self._error = e

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: a window is already open")
        self._sum_ua, self._count, self._error = 0.0, 0, None
        self._stop.clear()
        self.api.start_measuring()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._pump, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, counts: float | None = None, unit: str = "cycles") -> Measurement:
        """Close the window (``counts`` is not needed: the current was measured)."""
        if self._thread is None:
            raise RuntimeError(f"{self.name}: stop() without start()")
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = None
        wall = time.monotonic() - self._t0
        self.api.stop_measuring()
        if self._error is not None:
            raise RuntimeError(f"{self.name}: reading the PPK2 failed: {self._error}") from self._error
        self._drain_once()   # what arrived between the thread's last read and the stop
        charge_uc = self._sum_ua / SAMPLE_RATE_HZ
        voltage = self.voltage_mv / 1000
        mode = "source meter" if self.source_meter else "ampere meter"
        return Measurement(energy_uj=charge_uc * voltage, charge_uc=charge_uc, seconds=self._count / SAMPLE_RATE_HZ,
                           voltage_v=voltage, sample_rate_hz=SAMPLE_RATE_HZ, samples=self._count,
                           monitor=self.name, source=f"PPK2 {mode} at {self.voltage_mv} mV; window {wall:.3f} s wall")

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
            self.api.stop_measuring()
        if self.source_meter:
            self.api.toggle_DUT_power("OFF")
