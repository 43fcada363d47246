"""The domain: what a configuration space, a search spec, an objective, a price and a measured
figure are, and the readers of measured tables. Plain functions and dataclasses: no I/O
framework, no schemas, no platform import (``tests/unit/test_architecture.py``)."""
