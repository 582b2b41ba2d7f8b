"""Registrar (sans-IO): location service and REGISTER rules (RFC 3261 §10)."""

from sipcore.registrar.location import Binding, LocationService, contact_key
from sipcore.registrar.register import Answer, RegisterOutcome, Registrar

__all__ = ["Answer", "Binding", "LocationService", "RegisterOutcome", "Registrar", "contact_key"]
