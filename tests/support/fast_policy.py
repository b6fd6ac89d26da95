"""A lab policy whose key rollovers take minutes: short TTLs, delays and signature validity."""

from __future__ import annotations

import re

# The enforcer waits validity + resign + jitter - refresh before a new ZSK's signatures count
# as everywhere (enforcer.c); with the lab's defaults that is 11.5 days.
FAST = {
    "dnskey_ttl": "PT20S", "soa_ttl": "PT20S", "soa_minimum": "PT20S", "max_zone_ttl": "PT20S",
    "publish_safety": "PT5S", "retire_safety": "PT5S",
    "zone_propagation_delay": "PT5S", "skew_margin": "PT5S",
    "parent_propagation_delay": "PT10S", "parent_registration_delay": "PT5S", "ds_ttl": "PT20S",
    "parent_soa_ttl": "PT10S", "parent_soa_minimum": "PT10S",
}  # fmt: skip
# Not in the lab config: appended to [policy]. Re-signing every 20 s is more than 99 times a
# day, which ods-kaspcheck refuses with datecounter serials: unixtime then.
EXTRA = {
    "resign": "PT20S", "refresh": "PT2M", "validity_default": "PT3M", "validity_denial": "PT3M",
    "jitter": "PT5S", "inception_offset": "PT60S", "serial": "unixtime",
}  # fmt: skip
SECONDS = {"skew_margin": 5, "zone_propagation_delay": 5}


def fast_policy(config: str) -> str:
    for key, value in FAST.items():
        config, count = re.subn(rf'^{key} = ".*"$', f'{key} = "{value}"', config, flags=re.MULTILINE)
        assert count == 1, f"lab config has no {key}"
    extra = "".join(f'{k} = "{v}"\n' for k, v in EXTRA.items())
    config = config.replace("\n[backup]\n", f"{extra}\n[backup]\n", 1)
    # unixtime serials move every second: levelling by hand in tests, never in the background
    return config + "\n[serials]\nlevel_interval = 0\n"
