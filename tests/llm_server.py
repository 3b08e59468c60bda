"""A local OpenAI-compatible server with scripted replies, so litellm's real client runs over real HTTP.

    with ScriptedLLMServer() as server:
        server.script(Reply("Description: ..."), Reply(status=429), Reply(hang=True), Reply(..., before=edit))
        ... api_base=server.url ...
        server.requests  # the JSON bodies received, in order

Replies are served first-in first-out; when the script is empty, `default` answers (a callable of the
request body, or a Reply), and without one the server answers 500.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    text: str = ""
    status: int = 200
    """A status other than 200 answers with an OpenAI-style error body."""
    error: str = ""
    stream: bool | None = None
    """None: stream when the request asks for it."""
    hang: bool = False
    """Never answer: hold the connection open until the server stops."""
    drop: bool = False
    """Close the connection without a response."""
    headers: dict[str, str] = field(default_factory=dict)
    tokens_in: int = 100
    tokens_out: int = 50
    delay_s: float = 0.0
    finish_reason: str = "stop"
    """`length` says the output limit cut the reply."""
    before: Callable[[], object] | None = field(default=None, compare=False)
    """Called in the server's thread before it answers: a test changes the repository while the model 'thinks'."""


Responder = Callable[[dict[str, Any]], Reply]


class ScriptedLLMServer:
    def __init__(self, model: str = "test-model") -> None:
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.default: Reply | Responder | None = None
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._serve, name="llm-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        self._httpd.serve_forever(poll_interval=0.05)

    def start(self) -> ScriptedLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, *replies: Reply | str) -> None:
        with self._lock:
            self._script.extend(Reply(r) if isinstance(r, str) else r for r in replies)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.paths.clear()
            self.default = None

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def _next(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(body)
            if self._script:
                return self._script.pop(0)
            default = self.default
        if default is None:
            return Reply(status=500, error="the test server has no scripted reply left")
        return default if isinstance(default, Reply) else default(body)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                body["_authorization"] = self.headers.get("Authorization", "")
                with server._lock:
                    server.paths.append(self.path)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                reply = server._next(body)
                if reply.before is not None:
                    reply.before()
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.hang:
                    server._stopping.wait()
                    return
                if reply.drop:
                    self.close_connection = True
                    return
                if reply.status != 200:
                    self._error(reply)
                    return
                stream = bool(body.get("stream")) if reply.stream is None else reply.stream
                if stream:
                    self._sse(reply, body)
                else:
                    self._json(200, completion(reply, server.model))

            def _json(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def _error(self, reply: Reply) -> None:
                kinds = {401: "invalid_api_key", 403: "permission_denied", 404: "model_not_found", 429: "rate_limit"}
                message = reply.error or {
                    401: "Incorrect API key provided.",
                    403: "Permission denied.",
                    404: f"The model `{server.model}` does not exist.",
                    429: "Rate limit reached, retry later.",
                }.get(reply.status, "Internal server error.")
                error = {"message": message, "type": kinds.get(reply.status, "server_error"), "code": None}
                self._json(reply.status, {"error": error}, reply.headers)

            def _sse(self, reply: Reply, body: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": server.model}
                pieces = [reply.text[i : i + 16] for i in range(0, len(reply.text), 16)] or [""]
                chunks: list[dict[str, Any]] = [
                    {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
                ]
                chunks += [{**base, "choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
                chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    chunks.append({**base, "choices": [], "usage": usage(reply)})
                for chunk in chunks:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler


def usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.tokens_in,
        "completion_tokens": reply.tokens_out,
        "total_tokens": reply.tokens_in + reply.tokens_out,
    }


def completion(reply: Reply, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": usage(reply),
    }


def message_text(body: dict[str, Any]) -> str:
    """All the message contents of a request, joined, for assertions."""
    return "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
