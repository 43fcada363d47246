"""schemas/README.md is the contract other clients read: every example in it is a valid event
of its kind on the topic its heading names, and every event type has one."""

import json
import re

import msgpack

import schemas
from schemas import Event
from services.platform.topics import topic_for
from tests.helpers import REPO

README = (REPO / "schemas" / "README.md").read_text()
EXAMPLE = re.compile(r"^### `([a-z-]+)` \(topic `([a-z0-9.-]+)`\)\n\n```json\n(.*?)\n```", re.M | re.S)


def test_every_event_type_has_one_valid_example_on_its_topic():
    examples = EXAMPLE.findall(README)
    assert sorted(t for t, _, _ in examples) == sorted(schemas.SUPPORTED_VERSIONS)
    for kind, topic, body in examples:
        event = Event(**json.loads(body))
        assert event.type == kind and topic_for(kind, event.data) == topic
        wire = msgpack.packb(event.as_dict(), use_bin_type=True)      # what a client puts on the topic
        decoded = schemas.decode(wire, expect=(kind,))
        assert decoded.as_dict() == event.as_dict()
        decoded.payload                                                # and the services can use it


def test_the_readme_says_what_other_clients_had_to_find_out_alone():
    assert "Operator profile shares are 0-1, not percentages" in README
    assert "embeds the complete configuration" in README and "complete **price catalogue**" in README
    assert "msgpack" in README and "the message is JSON" in README
