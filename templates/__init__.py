"""Jinja2 templates for ODS, SoftHSM and BIND configs (shipped as duo_ods.templates)."""
