"""The gpiozero output on gpiozero's MockFactory (real clock, short tunes)."""

from __future__ import annotations

import asyncio

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from pi_appliance.errors import OutputError
from pi_appliance.music import Note, Tune
from pi_appliance.output.gpiozero import GpiozeroOutput, make_factory
from tests.fakes import Listener


class FreqPin(MockPWMPin):
    """Remembers every frequency it was set to, in order."""

    def __init__(self, factory, info):
        super().__init__(factory, info)
        self.freqs: list[float] = []

    def _set_frequency(self, value):
        super()._set_frequency(value)
        if value is not None:
            self.freqs.append(value)


@pytest.fixture
async def out():
    factory = MockFactory(pin_class=FreqPin)
    o = GpiozeroOutput(18, factory)
    lst = Listener()
    o.set_listener(lst)
    await o.open()
    yield o, lst, factory.pin(18)
    await o.close()
    factory.close()


async def test_plays_each_note_as_a_pwm_setting_and_ends_low(out):
    o, lst, pin = out
    tune = Tune("t", (Note(440.0, 40_000), Note(0.0, 30_000), Note(880.0, 40_000)))
    await o.play(tune)
    assert o.position_us() is not None
    await asyncio.wait_for(lst.event.wait(), 5)
    assert lst.finished == 1 and lst.errors == []
    assert pin.freqs[-2:] == [440.0, 880.0]
    values = [s.state for s in pin.states]
    assert values[-4:] == [0.5, 0, 0.5, 0]  # tone, rest, tone, low at the end
    assert pin.state == 0
    assert o.position_us() is None


async def test_volume_and_stop(out):
    o, lst, pin = out
    await o.set_volume(40)
    await o.play(Tune("t", (Note(1000.0, 2_000_000),)))
    await asyncio.sleep(0.05)
    assert pin.state == pytest.approx(0.2)
    await o.stop()
    assert pin.state == 0
    await asyncio.sleep(0.05)
    assert lst.finished == 0


async def test_seek_skips_the_notes_before(out):
    o, lst, pin = out
    tune = Tune("t", (Note(440.0, 500_000), Note(660.0, 30_000)))
    await o.play(tune, start_us=500_000)
    await asyncio.wait_for(lst.event.wait(), 5)
    assert pin.freqs[-1] == 660.0 and 440.0 not in pin.freqs[1:]


def test_unknown_pin_factory_is_a_clear_error():
    with pytest.raises(OutputError, match="no pin factory called 'nosuch'"):
        make_factory("nosuch")
    assert isinstance(make_factory("mock"), MockFactory)
