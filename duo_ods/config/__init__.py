"""Config: the user's TOML (model), what it resolves to (resolve), and loading it (load)."""
