"""BIND secondaries: the transfer TSIG key, rendered named config (AXFR only), and running them in the lab."""
