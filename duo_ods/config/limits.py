"""Defaults of the [input] limits, apart so that the zone checker can use them without the config model."""

from __future__ import annotations

# The zone file with its $INCLUDEs, checked from its size before a byte is read or hashed.
DEFAULT_MAX_BYTES = 512 * 1024 * 1024

# Checking holds every record in memory, about 1.1 KB each (measured with dnspython 2.9: 200,000 A
# records took 220 MB, and 24 s on a shared 2-core host): a million records is about 1.1 GB and a couple
# of minutes of checking; more than most signed zones have, and still a bound a signer host survives.
# Bigger zones raise it in [input] max_records.
DEFAULT_MAX_RECORDS = 1_000_000
