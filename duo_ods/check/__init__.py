"""`ods-duo check`: prove the mix. Per-source validity, cross-source validity, and reporting."""
