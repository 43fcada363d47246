"""The fuzz benchmark, small: malformed events through the real handlers crash nothing and are
all dead-lettered with a reason (the bench itself runs 1,000+)."""

import pytest

from bench.fuzz_events import run

pytestmark = pytest.mark.integration


def test_fuzzed_events_never_crash_a_consumer():
    s = run(250, seed_=3)
    assert s.events == 250
    assert s.crashes == 0, s.examples
    assert s.invalid_not_dead_lettered == 0 and s.dead_lettered_without_reason == 0
    assert s.dead_lettered > 200
