"""Small duo configs for unit tests that need a resolved Duo but no daemons."""

TWO_NODES = """
[nodes.a]
address = "127.0.0.11"
base_dir = "a"
token_label = "A"
[nodes.b]
address = "127.0.0.12"
base_dir = "b"
token_label = "B"
[backup]
dir = "backup"
"""

THREE_NODES = TWO_NODES.replace(
    "[backup]\n", '[nodes.c]\naddress = "127.0.0.13"\nbase_dir = "c"\ntoken_label = "C"\n[backup]\n'
)
