"""The backup store: key bundles (wrapped keys, never clear), kept longer than the nodes keep them."""
