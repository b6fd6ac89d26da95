"""Shared keys: bundles, DNSKEY/DS arithmetic, and the create flow across nodes and backup."""
