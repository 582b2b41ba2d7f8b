"""`sipcore trunk ...`, `sipcore calls`: trunks, DIDs and call legs."""

from __future__ import annotations
