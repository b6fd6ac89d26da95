"""Prometheus metrics of a duo: what `check` finds plus the daemons, backups and watchers."""
