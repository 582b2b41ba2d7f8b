"""Transports (EDGE): asyncio UDP and TCP listeners; bytes in, bytes out."""
