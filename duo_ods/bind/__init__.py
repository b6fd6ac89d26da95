"""BIND secondaries: rendered named config (AXFR only) for `ods-duo bind-config` and the lab."""
