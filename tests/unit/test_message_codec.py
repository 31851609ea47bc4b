"""Messages kept as intents in the outbox come back equal, of every kind the bus carries."""

from __future__ import annotations

import pytest

from shared.message_codec import decode, encode
from shared.messages import (
    DriftSignalled,
    JobStatusChanged,
    Message,
    PerformIntent,
    RollBack,
    StartRetraining,
)


@pytest.mark.parametrize(
    "message",
    [
        StartRetraining("cycle-1", "src|type|subject|id"),
        RollBack("cycle-1", "errors above 5%", "k", {"rate": 0.07, "rows": [1, 2]}, "ops"),
        DriftSignalled("credit", "alert", "credit-drift", "k", {"nested": {"a": None}}),
        JobStatusChanged("job-1", "Failed", {"autopilot_cycle": "c"}, "k", "exp"),
        PerformIntent(3, "message", '{"type":"X"}', "k"),
    ],
)
def test_a_message_survives_the_outbox(message: Message) -> None:
    assert decode(encode(message)) == message


def test_only_messages_of_the_bus_are_kept() -> None:
    class Stranger(StartRetraining):
        pass

    with pytest.raises(TypeError):
        encode(Stranger("c", "k"))
    with pytest.raises(ValueError, match="unknown message type"):
        decode('{"type": "RunShell", "fields": {}}')
