"""Access control: TLS, mutual TLS and bearer-token authentication for the gRPC server.

- `TlsConfig(cert_file, key_file, client_ca_file=None)` -> server credentials. With
  `client_ca_file` the server requires a client certificate signed by that CA (mTLS).
  Unreadable or non-PEM files fail at startup with `SecurityConfigError` naming the path.
- `TokenAuth`: a `grpc.aio.ServerInterceptor` requiring `authorization: Bearer <token>`
  metadata on every call, unary and streaming. Tokens come from a file (one per line, blank
  lines and `#` comments ignored) and/or `$TICKSERVE_TOKENS` (comma-separated). The presented
  token is compared with every configured token in constant time (SHA-256 digests of both,
  `hmac.compare_digest`, no early exit), and never appears in a status message or a log.
  Health checks (`grpc.health.v1.Health`) stay open unless `health_requires_token`; everything
  else, server reflection included, needs the token.

See docs/security.md for how to turn each of these on.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc

from ..errors import Status, TickserveError

log = logging.getLogger(__name__)

TOKENS_ENV = "TICKSERVE_TOKENS"  # server: comma-separated accepted tokens
CLIENT_TOKEN_ENV = "TICKSERVE_TOKEN"  # clients (the CLI): the token to present
HEALTH_SERVICE_PREFIX = "/grpc.health.v1.Health/"
MIN_TOKEN_LENGTH = 16  # shorter tokens are accepted with a warning


class SecurityConfigError(TickserveError):
    """TLS or token configuration that cannot be used (raised at startup, never to a client)."""

    status = Status.FAILED_PRECONDITION


# --- TLS ---------------------------------------------------------------------------


def read_pem(path: Path | str, what: str, marker: str) -> bytes:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SecurityConfigError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise SecurityConfigError(f"{what} {path}: is a directory, not a PEM file") from None
    except OSError as exc:
        raise SecurityConfigError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    if b"-----BEGIN " not in data or marker.encode() not in data:
        raise SecurityConfigError(f"{what} {path}: not a PEM file with a {marker.strip('-').strip()} block")
    return data


@dataclass(frozen=True)
class TlsConfig:
    """Server TLS: a PEM certificate chain and its private key; with `client_ca_file`, mutual TLS."""

    cert_file: Path | str
    key_file: Path | str
    client_ca_file: Path | str | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None

    def server_credentials(self) -> grpc.ServerCredentials:
        """Read the files (clear errors naming the path) and build the server credentials.

        The credentials are tried on a throwaway server bound to a free loopback port: gRPC
        refuses a key that does not belong to the certificate only when a port is added, and
        then reports it as "Failed to bind", which would send the user after the wrong problem.
        """
        cert = read_pem(self.cert_file, "TLS certificate", "CERTIFICATE-----")
        key = read_pem(self.key_file, "TLS private key", "PRIVATE KEY-----")
        client_ca = read_pem(self.client_ca_file, "TLS client CA", "CERTIFICATE-----") if self.client_ca_file else None
        credentials = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
        )
        probe = grpc.server(ThreadPoolExecutor(max_workers=1))
        try:
            probe.add_secure_port("127.0.0.1:0", credentials)
        except RuntimeError:
            raise SecurityConfigError(
                f"TLS certificate {self.cert_file} and private key {self.key_file}: gRPC cannot use them "
                "(is the key the certificate's own, unencrypted?)"
            ) from None
        finally:
            probe.stop(None)
        return credentials


# --- bearer tokens -----------------------------------------------------------------


def _check_token(token: str, where: str) -> str:
    # Metadata values must be printable ASCII; a space would make "Bearer <token>" ambiguous.
    if not token or not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise SecurityConfigError(f"{where}: a token must be non-empty printable ASCII without spaces")
    return token


def read_token_file(path: Path | str) -> list[str]:
    """Tokens in a file: one per line, surrounding whitespace stripped, blank lines and `#` comments ignored."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecurityConfigError(f"token file {path}: no such file") from None
    except IsADirectoryError:
        raise SecurityConfigError(f"token file {path}: is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecurityConfigError(
            f"token file {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            tokens.append(_check_token(line, f"token file {path}, line {number}"))
    return tokens


def tokens_from_env(env: Mapping[str, str] | None = None, name: str = TOKENS_ENV) -> list[str]:
    """Comma-separated tokens in the environment variable `name` (absent or empty: none)."""
    value = (os.environ if env is None else env).get(name, "")
    return [_check_token(t.strip(), f"${name}") for t in value.split(",") if t.strip()]


def _digest(token: str | bytes) -> bytes:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


def _abort_handler(message: str) -> grpc.RpcMethodHandler:
    async def deny(request_iterator, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    # A stream-stream handler works for every method type on the wire and reads no request:
    # an unauthenticated caller gets its status before the server buffers anything it sent.
    return grpc.stream_stream_rpc_method_handler(deny)


class TokenAuth(grpc.aio.ServerInterceptor):
    """Bearer-token authentication for every call (unary and streaming) on a `grpc.aio` server."""

    def __init__(self, tokens: Iterable[str], *, health_requires_token: bool = False) -> None:
        tokens = [_check_token(t, "token") for t in tokens]
        if not tokens:
            raise SecurityConfigError("token authentication needs at least one token")
        if any(len(t) < MIN_TOKEN_LENGTH for t in tokens):
            log.warning(
                "a token is shorter than %d characters: use long random tokens "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')",
                MIN_TOKEN_LENGTH,
            )
        # Only digests are kept: equal lengths in every comparison, and this object holds no token.
        self._digests = tuple(_digest(t) for t in dict.fromkeys(tokens))
        self.health_requires_token = health_requires_token
        self._missing = _abort_handler("missing bearer token: send metadata 'authorization: Bearer <token>'")
        self._malformed = _abort_handler(
            "malformed authorization metadata: expected exactly one 'authorization: Bearer <token>'"
        )
        self._invalid = _abort_handler("invalid bearer token")

    @classmethod
    def load(
        cls,
        token_file: Path | str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        health_requires_token: bool = False,
    ) -> TokenAuth:
        """Tokens from `token_file` and from $TICKSERVE_TOKENS together; an error if there are none."""
        tokens = read_token_file(token_file) if token_file is not None else []
        tokens += tokens_from_env(env)
        if not tokens:
            where = f"token file {token_file}" if token_file is not None else f"${TOKENS_ENV}"
            raise SecurityConfigError(f"{where}: no tokens (one per line; blank lines and # comments are ignored)")
        return cls(tokens, health_requires_token=health_requires_token)

    @property
    def token_count(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:  # never the tokens
        return f"TokenAuth({self.token_count} token(s), health_requires_token={self.health_requires_token})"

    def check(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
        """None if the metadata carries a valid bearer token, otherwise why not (client-safe, no token)."""
        values = [v for k, v in (metadata or ()) if k.lower() == "authorization"]
        if not values:
            return "missing"
        if len(values) > 1:
            return "malformed"
        value = values[0]
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        scheme, _, presented = value.strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented or not presented.isascii():
            return "malformed"  # tokens are printable ASCII; anything else cannot match
        digest = _digest(presented)
        matched = 0
        for known in self._digests:  # every token, always: no early exit on a match
            matched |= hmac.compare_digest(digest, known)
        return None if matched else "invalid"

    async def intercept_service(self, continuation, handler_call_details: grpc.HandlerCallDetails):
        method = handler_call_details.method or ""
        if not self.health_requires_token and method.startswith(HEALTH_SERVICE_PREFIX):
            return await continuation(handler_call_details)
        problem = self.check(handler_call_details.invocation_metadata)
        if problem is None:
            return await continuation(handler_call_details)
        log.info("%s refused: UNAUTHENTICATED (%s bearer token)", method, problem)
        return {"missing": self._missing, "malformed": self._malformed}.get(problem, self._invalid)
