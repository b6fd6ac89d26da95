"""The embedded lab: a complete duo on one machine."""
