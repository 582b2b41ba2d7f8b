"""`sipcore rate`, `sipcore invoice ...`, `sipcore alerts`: rating from the store."""

from __future__ import annotations
