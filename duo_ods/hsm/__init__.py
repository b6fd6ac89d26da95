"""PKCS#11 layer: tokens, ODS-compatible DNSSEC keys, KEK distribution and key wrapping.

One process talks to the tokens of one PKCS#11 configuration at a time (SoftHSM:
SOFTHSM2_CONF, read at C_Initialize); set it in the environment before first use.

- token:   open_session (a user Session), open_so_session (the SO's), list_tokens
- keys:    generate_keypair, dnskey_public, wrap_private / unwrap_private, seal_key, list_keys, ...
- kek:     generate_kek (backup token), transport keys, import_trusted_transport_key (SO),
           wrap_kek_to_trusted / unwrap_kek, retire_kek, kek_fingerprint
- custody: custody_report / custody_problems (the sealed state, read from the token)
Custody rules and their limits on SoftHSM: docs/security.md.
"""
