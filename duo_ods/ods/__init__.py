"""Wrappers for the OpenDNSSEC tools: the enforcer and signer clients, and their output."""
