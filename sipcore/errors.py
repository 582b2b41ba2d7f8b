"""The one exception tree of sipcore.

A :class:`RemoteProtocolError` means the peer broke SIP; its class attribute
``status`` is the response the server sends (or ``None`` when the message can
only be dropped, e.g. a malformed response).  It is turned into a response in
exactly one place (the server's stateless error path).  A
:class:`LocalProtocolError` is our own bug and never goes on the wire.
"""

from __future__ import annotations


class SipcoreError(Exception):
    """Root of every error sipcore raises on purpose."""


class RemoteProtocolError(SipcoreError):
    """The peer sent something SIP does not allow."""

    status: int | None = 400
    reason: str = "Bad Request"


class ParseError(RemoteProtocolError):
    """The message is not well-formed SIP (RFC 3261 §25): 400 Bad Request."""

    status = 400
    reason = "Bad Request"


class MessageTooLarge(ParseError):
    """The message exceeds the configured size limit: 513 Message Too Large."""

    status = 513
    reason = "Message Too Large"


class TooManyHeaders(ParseError):
    """More header fields than the configured limit: 400 Bad Request."""

    status = 400
    reason = "Too Many Headers"


class HeaderTooLong(ParseError):
    """A header line longer than the configured limit: 400 Bad Request."""

    status = 400
    reason = "Header Line Too Long"


class VersionNotSupported(ParseError):
    """SIP version other than SIP/2.0: 505 Version Not Supported (§8.2.2? §21.5.7)."""

    status = 505
    reason = "Version Not Supported"


class IncompleteMessage(ParseError):
    """Content-Length announces more body than arrived.

    On a datagram transport this is a 400 (RFC 3261 §18.3); a stream framer
    instead waits for more octets and never raises it.
    """

    status = 400
    reason = "Bad Request"


class SdpError(ParseError):
    """A session description (RFC 4566) that cannot be parsed."""

    status = 400
    reason = "Bad Request"


class LoopDetected(RemoteProtocolError):
    status = 482
    reason = "Loop Detected"


class TooManyHops(RemoteProtocolError):
    status = 483
    reason = "Too Many Hops"


class LocalProtocolError(SipcoreError):
    """sipcore itself tried to do something SIP forbids: a bug, never sent."""


class ConfigError(SipcoreError):
    """A configuration file is wrong; the message names the file and the key."""

    def __init__(self, path: str, key: str, reason: str) -> None:
        super().__init__(f"{path}: {key}: {reason}")
        self.path = path
        self.key = key
        self.reason = reason
