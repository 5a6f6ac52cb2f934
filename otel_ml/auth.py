"""One rule for the ``Authorization`` header of every route: OTLP/gRPC, OTLP/HTTP, /metrics, the pages and the API.
The standard library only: receiver worker processes import it without the HTTP server."""

from __future__ import annotations

import base64
import binascii
import hmac


def token_matches(header: str, token: bytes | None) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (None: no token is required): ``Bearer <token>`` or
    HTTP Basic with the token as the password (what a browser's login prompt and Prometheus' ``basic_auth`` send),
    the scheme in any case and spaces around as RFC 7235 allows. The one rule of every route: OTLP/gRPC, OTLP/HTTP,
    /metrics, the pages and the API. Compared in constant time.

    >>> token_matches("bearer  s3cret ", b"s3cret"), token_matches("Bearer wrong", b"s3cret")
    (True, False)
    >>> token_matches("Basic " + base64.b64encode(b"any:s3cret").decode(), b"s3cret"), token_matches("", None)
    (True, True)
    """
    if token is None:
        return True
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.strip().encode(), token)
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(password, token)
    return False
