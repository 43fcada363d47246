"""Property: whatever bytes arrive, decode returns a valid event or raises SchemaError -
never anything else (which would crash a consumer)."""

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from schemas import SchemaError

values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=12) | st.binary(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(-2**63, 2**63 - 1), inner, max_size=5),
    max_leaves=15)


def decodes_or_refuses(raw):
    try:
        ev = schemas.decode(raw)
    except SchemaError as exc:
        assert str(exc)
        return
    schemas.validate(ev)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(raw):
    decodes_or_refuses(raw)


@settings(max_examples=300, deadline=None)
@given(values)
def test_random_msgpack_values(v):
    decodes_or_refuses(msgpack.packb(v, use_bin_type=True))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "version", "event_id", "search_id", "causation_id", "ts",
                                        "producer", "data"]), values, max_size=8))
def test_envelope_shaped_maps(d):
    decodes_or_refuses(msgpack.packb(d, use_bin_type=True))
