"""Rendering of ODS and SoftHSM configs from Jinja2 templates, and their validation."""
