"""PKCS#11 layer: tokens, ODS-compatible DNSSEC keys, KEK distribution and key wrapping.

One process talks to the tokens of one PKCS#11 configuration at a time (SoftHSM:
SOFTHSM2_CONF, read at C_Initialize); set it in the environment before first use.

- token: init_token, open_session (a logged-in Session), list_tokens
- keys:  generate_keypair, dnskey_public, wrap_private / unwrap_private, list_keys, ...
- kek:   transport keys, generate_kek, wrap_kek_for / unwrap_kek, kek_fingerprint
"""
