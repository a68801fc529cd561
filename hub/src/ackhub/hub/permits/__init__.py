"""Permits: registration, verification, draw-down and on-demand registry lookup (docs/permits.md)."""
