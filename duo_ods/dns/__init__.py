"""Generic DNS helpers: queries, NOTIFY, the transfer TSIG key, zone names."""
