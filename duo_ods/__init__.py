"""ods-duo: two live OpenDNSSEC signers that share keys and sign independently."""

__version__ = "0.1.0"
