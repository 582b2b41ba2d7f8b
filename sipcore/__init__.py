"""sipcore: an embedded SIP proxy and registrar with built-in usage metering."""

__version__ = "0.1.0"
