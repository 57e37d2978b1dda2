"""The outputs' contract (outputs/contract.py): what the loop may call on an output."""

import numpy as np
import pytest

from flowvj.outputs.contract import Output, attach


class OnlyListens:
    def __init__(self):
        self.applied = []

    def control_applied(self, name, value, caption):
        self.applied.append((name, value, caption))


def test_a_listener_gets_no_ops_for_what_it_lacks_and_its_own_methods_bound():
    listener = OnlyListens()
    attached = attach(listener)
    attached.show(np.zeros((2, 2, 3), np.uint8), {})       # no show: nothing happens
    assert list(attached.poll()) == [] and list(attached.pending_controls()) == []
    assert attached.handles("midi_learn") is False
    attached.control_applied("speed", 2.0, "speed: 2.00x")
    assert listener.applied == [("speed", 2.0, "speed: 2.00x")] and attached.name == "OnlyListens"
    assert not isinstance(listener, Output)


def test_something_that_keeps_no_part_of_the_contract_is_refused_by_name():
    with pytest.raises(TypeError, match="object is not an output"):
        attach(object())
