"""Power monitors: the energy of a measurement window, from a real instrument or from a model.

A ``PowerMonitor`` opens a window with ``start()`` and closes it with ``stop()``, which returns a
``Measurement`` (charge and energy, with the supply voltage and sample rate they came from). ``stop``
takes the board's counter for the window (cycles or emulated instructions): a model needs it, an
instrument ignores it. Implementations:

- ``ModelPowerMonitor``: the target's energy coefficients (``figures.energy_uj``: active current per MHz
  x voltage x time at the target clock); a proxy, with the datasheet source it came from;
- ``ppk2.PPK2Monitor``: a Nordic Power Profiler Kit II through the ``ppk2-api`` package.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..figures import energy_uj
from ..targets import Target


class PowerMonitorUnavailable(RuntimeError):
    """The instrument (or its Python package) is not there: the message says what is missing."""


@dataclass
class Measurement:
    energy_uj: float
    charge_uc: float
    seconds: float                 # length of the window the figures cover
    voltage_v: float               # the supply voltage the energy is computed at
    sample_rate_hz: float | None   # None for a model
    samples: int                   # current samples averaged (0 for a model)
    monitor: str                   # what produced the figures
    source: str = ""               # where a model's coefficients come from / how an instrument was set up

    @property
    def mean_ua(self) -> float:
        return self.charge_uc / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {"energy_uj": self.energy_uj, "charge_uc": self.charge_uc, "seconds": self.seconds,
                "voltage_v": self.voltage_v, "sample_rate_hz": self.sample_rate_hz, "samples": self.samples,
                "mean_ua": self.mean_ua, "monitor": self.monitor, "source": self.source}


@runtime_checkable
class PowerMonitor(Protocol):
    name: str

    def start(self) -> None:
        """Open a measurement window."""

    def stop(self, counts: float | None = None, unit: str = "cycles") -> Measurement:
        """Close the window; ``counts`` is the board's counter over it (``unit``: cycles or instructions)."""

    def close(self) -> None: ...


class ModelPowerMonitor:
    """The energy proxy of a target's coefficients, behind the monitor interface: the window's energy is
    computed from the counter, never measured."""

    def __init__(self, target: Target):
        self.target = target
        self.name = f"model:{target.name}"
        self._open = False

    def start(self) -> None:
        self._open = True

    def stop(self, counts: float | None = None, unit: str = "cycles") -> Measurement:
        if not self._open:
            raise RuntimeError(f"{self.name}: stop() without start()")
        if counts is None:
            raise ValueError(f"{self.name}: a model needs the window's counter (cycles or instructions)")
        self._open = False
        t = self.target
        if unit not in ("cycles", "instructions"):
            raise ValueError(f"{self.name}: unit {unit!r}: expected 'cycles' or 'instructions'")
        energy = energy_uj(t, unit, counts)
        voltage = float(t.energy["voltage"])
        source = t.energy.get("source", "")
        if unit != "cycles":
            source += f"; {unit} taken as cycles (one per cycle at {t.clock_hz / 1e6:g} MHz, an assumption)"
        return Measurement(energy_uj=energy, charge_uc=energy / voltage, seconds=counts / t.clock_hz,
                           voltage_v=voltage, sample_rate_hz=None, samples=0,
                           monitor=f"model: {t.energy['active_ua_per_mhz']} uA/MHz x {voltage:g} V", source=source)

    def close(self) -> None:
        self._open = False
