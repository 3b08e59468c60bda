"""Notifications (the `notify` setting): a new best, a session that needs the user, and the session's end, sent
to each URL on a thread of their own. http(s) URLs get a JSON POST; any other URL goes through apprise (Slack,
Discord, Telegram, email...). A failing URL is said once in the events and retried with a backoff; the loop never
waits for it. URLs carry secrets (tokens, webhook paths): only `redact(url)` is ever written anywhere."""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import events as ev

RETRIES = 4
BACKOFF_S = 1.0
FLUSH_S = 10.0
TIMEOUT_S = 10.0


def redact(url: str) -> str:
    """What may be shown of a URL: its scheme, and for http(s) its host (paths and queries hold secrets)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{parts.hostname or '?'}/…"
    return f"{parts.scheme or '?'}://…"


@dataclass(frozen=True)
class Notice:
    kind: str  # "new_best", "needs_user" or "session_end"
    session: str
    experiment: int | None
    metric: str
    value: float | None
    text: str

    def payload(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "session": self.session,
            "experiment": self.experiment,
            "metric": self.metric,
            "value": self.value,
            "text": self.text,
        }


def post_json(url: str, notice: Notice) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(notice.payload()).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        response.read()


def send_apprise(url: str, notice: Notice) -> None:
    import apprise

    sender = apprise.Apprise()
    if not sender.add(url):
        raise ValueError("apprise does not know this kind of URL")
    if not sender.notify(title=f"autoresearch {notice.session}", body=notice.text):
        raise OSError("apprise could not deliver it")


def deliver(url: str, notice: Notice) -> None:
    if urlsplit(url).scheme in ("http", "https"):
        post_json(url, notice)
    else:
        send_apprise(url, notice)


def _reason(exc: BaseException) -> str:
    """Why a send failed, without the URL (exceptions of HTTP libraries often quote it)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason) if not isinstance(exc.reason, str) or "://" not in exc.reason else "unreachable"
    return type(exc).__name__


class Notifier:
    """An event sink: turns the moments that matter into notices and sends them on its own thread."""

    def __init__(
        self,
        urls: list[str],
        session: str,
        metric: str,
        emit: ev.EventSink,
        send: Callable[[str, Notice], None] = deliver,
        backoff_s: float = BACKOFF_S,
    ) -> None:
        self.urls = list(urls)
        self.session = session
        self.metric = metric
        self.emit = emit
        self.send = send
        self.backoff_s = backoff_s
        self._queue: queue.Queue[Notice | None] = queue.Queue()
        self._said: set[str] = set()
        self._best: float | None = None
        self._thread = threading.Thread(target=self._deliver_all, name="autoresearch-notify", daemon=True)
        self._thread.start()

    def __call__(self, event: ev.Event) -> None:
        notice = self._notice(event)
        if notice is not None:
            self._queue.put(notice)

    def _notice(self, event: ev.Event) -> Notice | None:
        if isinstance(event, ev.ResultRecorded):
            best, self._best = self._best, event.best
            if event.row.status == "keep" and event.best is not None and best is not None and event.best != best:
                what = f"{self.metric} {event.best:.6f} at #{event.number}"
                text = f"{self.session}: new best {what} ({event.row.description})"
                return Notice("new_best", self.session, event.number, self.metric, event.best, text)
        elif isinstance(event, ev.NeedsUser):
            text = f"{self.session} needs you: {event.message}"
            return Notice("needs_user", self.session, None, self.metric, self._best, text)
        elif isinstance(event, ev.LoopStopped):
            text = f"{self.session} ended after {event.experiments} experiments: {event.reason}"
            return Notice("session_end", self.session, event.experiments, self.metric, self._best, text)
        return None

    def _deliver_all(self) -> None:
        while (notice := self._queue.get()) is not None:
            for url in self.urls:
                self._deliver(url, notice)

    def _deliver(self, url: str, notice: Notice) -> None:
        delay = self.backoff_s
        for attempt in range(RETRIES):
            try:
                self.send(url, notice)
                return
            except Exception as exc:  # any failure of a notification must leave the loop alone
                if url not in self._said:
                    self._said.add(url)
                    self.emit(
                        ev.Info(f"notification to {redact(url)} failed ({_reason(exc)}); retrying with a backoff")
                    )
                if attempt + 1 < RETRIES:
                    time.sleep(delay)
                    delay *= 2

    def close(self, flush_s: float = FLUSH_S) -> None:
        """Send what is queued (the session's end), waiting at most `flush_s`."""
        self._queue.put(None)
        self._thread.join(flush_s)
