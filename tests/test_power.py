"""Power monitors: the model proxy behind the monitor interface, the PPK2 monitor's arithmetic on a fake
instrument, and (with a PPK2 connected) a real window."""
from __future__ import annotations

import time

import pytest

from harness.figures import energy_uj
from harness.power import Measurement, ModelPowerMonitor, PowerMonitor, PowerMonitorUnavailable
from harness.power.ppk2 import SAMPLE_RATE_HZ, PPK2Monitor, ppk2_ports
from harness.targets import load_target


def test_model_monitor_is_the_targets_energy_proxy():
    t = load_target("netduinoplus2")
    m = ModelPowerMonitor(t)
    assert isinstance(m, PowerMonitor)
    m.start()
    got = m.stop(counts=168_000_000, unit="cycles")           # one second at 168 MHz
    assert got.energy_uj == pytest.approx(energy_uj(t, "cycles", 168_000_000))
    # 274 uA/MHz x 168 MHz = 46.0 mA at 3.3 V for 1 s: 151.9 mJ
    assert got.energy_uj == pytest.approx(0.274e-3 * 168 * 3.3 * 1e6, rel=1e-9)
    assert got.seconds == pytest.approx(1.0) and got.voltage_v == 3.3
    assert got.mean_ua == pytest.approx(274 * 168)
    assert got.sample_rate_hz is None and got.samples == 0 and "DS8626" in got.source
    m.start()
    assert "assumption" in m.stop(counts=1000, unit="instructions").source
    with pytest.raises(RuntimeError, match="without start"):
        m.stop(counts=1)
    m.start()
    with pytest.raises(ValueError, match="needs the window's counter"):
        m.stop()


class FakePPK2:
    """ppk2_api.PPK2_API's measuring calls: each read returns one chunk of samples (µA)."""

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.calls = []

    def start_measuring(self):
        self.calls.append("start")

    def stop_measuring(self):
        self.calls.append("stop")

    def get_data(self):
        return self.chunks.pop(0) if self.chunks else b""

    def get_samples(self, data):
        return list(data), []

    def toggle_DUT_power(self, state):
        self.calls.append(f"power {state}")


def test_ppk2_monitor_integrates_current_into_charge_and_energy():
    chunks = [[1000.0] * 500, [3000.0] * 500]               # 1000 samples: 500 at 1 mA, 500 at 3 mA
    fake = FakePPK2(chunks)
    m = PPK2Monitor(fake, voltage_mv=1800, port="/dev/ttyACM9", poll_s=0.001)
    assert isinstance(m, PowerMonitor)
    m.start()
    deadline = time.monotonic() + 5
    while fake.chunks and time.monotonic() < deadline:
        time.sleep(0.005)
    got = m.stop()
    assert isinstance(got, Measurement) and got.samples == 1000
    assert got.seconds == pytest.approx(1000 / SAMPLE_RATE_HZ)           # 10 ms at 100 kS/s
    assert got.charge_uc == pytest.approx((500 * 1000 + 500 * 3000) / SAMPLE_RATE_HZ)   # 20 µC
    assert got.energy_uj == pytest.approx(got.charge_uc * 1.8) and got.mean_ua == pytest.approx(2000)
    assert got.sample_rate_hz == SAMPLE_RATE_HZ and got.voltage_v == 1.8 and "1800 mV" in got.source
    assert fake.calls == ["start", "stop"]
    m.close()
    assert fake.calls[-1] == "power OFF"


def test_ppk2_reading_error_is_reported_by_stop():
    class Broken(FakePPK2):
        def get_data(self):
            raise OSError("serial port gone")
    m = PPK2Monitor(Broken([]), poll_s=0.001)
    m.start()
    time.sleep(0.02)
    with pytest.raises(RuntimeError, match="serial port gone"):
        m.stop()


def test_ppk2_open_without_an_instrument_says_so():
    if ppk2_ports():
        pytest.skip("a PPK2 is connected")
    with pytest.raises(PowerMonitorUnavailable, match="no PPK2 connected|ppk2-api"):
        PPK2Monitor.open()


def test_ppk2_measures_a_real_window():
    ports = ppk2_ports()
    if not ports:
        pytest.skip("no PPK2 connected (ppk2_api.PPK2_API.list_devices() is empty)")
    m = PPK2Monitor.open(ports[0], voltage_mv=3300)
    try:
        m.start()
        time.sleep(0.2)
        got = m.stop()
    finally:
        m.close()
    assert got.samples > 0.5 * 0.2 * SAMPLE_RATE_HZ and got.energy_uj >= 0
