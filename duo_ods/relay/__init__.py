"""The transfer relays next to each signer and the duo's catalog zones (RFC 9432)."""
