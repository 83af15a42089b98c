"""An HTTP forwarding proxy that answers a seeded fraction of requests with the provider's own throttling reply.

Why it exists: none of the emulators (moto, fake-gcs-server, Azurite) can be told to throttle, and a
fault injected inside coldvault would skip the part worth testing: that each real SDK parses a real
throttling answer into an exception the adapter maps to ``Transient``.  So the proxy sits on the wire
between the SDK and the emulator, forwards requests faithfully, and replaces some of them, without
forwarding them, with what S3 (503 SlowDown), GCS (429 rateLimitExceeded) or Azure (503 ServerBusy)
send when asked too fast.

    with ThrottleProxy(emulator.endpoint, "s3", fraction=0.25, seed=7) as proxy:
        ...point the client at proxy.endpoint...
    proxy.injected, proxy.forwarded   # Counters by HTTP method
"""

from __future__ import annotations

import http.client
import json
import random
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

# Headers about one connection, not about the request or response they travel with (RFC 9110, 7.6.1).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization"}
    | {"te", "trailer", "transfer-encoding", "upgrade", "expect"}
)


def throttle_reply(provider: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a throttling answer, as each provider documents it."""
    if provider == "s3":
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message>"
            b"<RequestId>THROTTLEPROXY</RequestId><HostId>throttle-proxy</HostId></Error>"
        )
        return 503, {"Content-Type": "application/xml"}, body
    if provider == "gcs":
        error = {"domain": "usageLimits", "reason": "rateLimitExceeded", "message": "rate limit"}
        body = json.dumps({"error": {"code": 429, "message": "rate limit", "errors": [error]}}).encode()
        return 429, {"Content-Type": "application/json; charset=UTF-8"}, body
    if provider == "azure":
        body = (
            b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
            b"<Message>The server is busy.\nRequestId:throttle-proxy\nTime:2024-01-01T00:00:00.0000000Z</Message>"
            b"</Error>"
        )
        return 503, {"Content-Type": "application/xml", "x-ms-error-code": "ServerBusy"}, body
    raise ValueError(f"unknown provider {provider!r}")


class ThrottleProxy:
    """Forwards to ``upstream``; after the first ``spare`` requests, throttles each with probability ``fraction``.

    ``match(method, path)``, when given, limits throttling to the requests it accepts, and ``limit``
    to that many answers in all.  With ``landed``, a throttled PUT or POST is forwarded first: the write
    happens and only its answer is lost, as a client sees a 5xx or a reset after the provider committed.
    """

    def __init__(
        self,
        upstream: str,
        provider: str,
        *,
        fraction: float = 0.25,
        seed: int = 0,
        spare: int = 0,
        retry_after: int = 0,
        match: Callable[[str, str], bool] | None = None,
        limit: int | None = None,
        landed: bool = False,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"expected an http:// upstream, got {upstream!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.provider = provider
        self.fraction = fraction
        self.spare = spare
        self.match = match
        self.limit = limit
        self.landed = landed
        self.reply = throttle_reply(provider)
        self.reply[1]["Retry-After"] = str(retry_after)
        self.injected: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self.log: list[tuple[str, str, bool]] = []  # (method, path, throttled), in arrival order
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="throttle-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> ThrottleProxy:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def decide(self, method: str, path: str) -> bool:
        """Whether to throttle this request; counts it either way."""
        with self._lock:
            throttle = (
                len(self.log) >= self.spare
                and (self.limit is None or self.injected.total() < self.limit)
                and (self.match is None or self.match(method, path))
                and self._rng.random() < self.fraction
            )
            (self.injected if throttle else self.forwarded)[method] += 1
            self.log.append((method, path, throttle))
            return throttle


def _handler(proxy: ThrottleProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs expect; every answer carries its length
        upstream: http.client.HTTPConnection | None = None

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: pytest shows the test's own output

        def finish(self) -> None:
            super().finish()
            if self.upstream is not None:
                self.upstream.close()

        def do_request(self) -> None:
            body = self._read_body()
            if proxy.decide(self.command, self.path):
                if proxy.landed and self.command in ("PUT", "POST"):
                    self._forward(body)
                self._answer(*proxy.reply)
                return
            status, headers, answer = self._forward(body)
            self._answer(status, headers, answer)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = do_request

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                body = bytearray()
                while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                    body += self.rfile.read(size)
                    self.rfile.readline()  # the CRLF after each chunk
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(body)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            # The Host header goes through unchanged: S3's signature covers it, and no emulator routes by it.
            headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP]
            if body or self.command in ("POST", "PUT", "PATCH"):
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                headers.append(("Content-Length", str(len(body))))
            for attempt in (1, 2):  # once more on a fresh connection if the kept-alive one was closed
                if self.upstream is None:
                    self.upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    self.upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for key, value in headers:
                        self.upstream.putheader(key, value)
                    self.upstream.endheaders(body or None)
                    response = self.upstream.getresponse()
                    answer = response.read()  # undoes chunked encoding; the length is set anew below
                except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                    self.upstream.close()
                    self.upstream = None
                    if attempt == 2:
                        raise
                    continue
                if response.will_close:
                    self.upstream.close()
                    self.upstream = None
                kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
                if self.command != "HEAD":  # a HEAD answer's length is the object's, not this body's
                    kept = [(k, v) for k, v in kept if k.lower() != "content-length"]
                    kept.append(("Content-Length", str(len(answer))))
                return response.status, [self._relocated(k, v) for k, v in kept], answer
            raise AssertionError("unreachable")

        def _relocated(self, key: str, value: str) -> tuple[str, str]:
            """A Location naming the emulator (a GCS resumable upload's session URL) names the proxy instead."""
            if key.lower() == "location":
                host, port = proxy.upstream
                value = value.replace(f"http://{host}:{port}", proxy.endpoint)
            return key, value

        def _answer(self, status: int, headers: dict[str, str] | list[tuple[str, str]], body: bytes) -> None:
            items = list(headers.items()) if isinstance(headers, dict) else headers
            if not any(k.lower() == "content-length" for k, _ in items):
                items.append(("Content-Length", str(len(body))))
            self.send_response_only(status)
            for key, value in items:
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD" and status not in (204, 304):
                self.wfile.write(body)
            self.wfile.flush()

    return Handler
