"""Webhook delivery (EDGE): POST the durable outbox's JSON documents, with retries.

Alerts are written together with their ``webhook_outbox`` row in one
transaction (:meth:`~sipcore.store.billing_alerts.AlertsStore.record_alerts`);
this worker delivers due rows in the background, so nothing on the packet
path ever waits for a tenant's web server:

* one HTTP/1.1 ``POST`` per row over plain asyncio streams (``https://`` via
  the default SSL context), ``Content-Type: application/json``,
  ``Connection: close``, bounded by ``timeout_s`` as a whole;
* a 2xx answer marks the row delivered; anything else (another status, a
  refused connection, a timeout) records the error and schedules the next
  attempt ``backoff_ms x 2^(attempts-1)`` later, capped at
  ``max_backoff_ms``; after ``max_attempts`` the row is given up (kept, with
  its last error, for ``sipcore alerts`` to show);
* the schedule lives in the database, so a restart resumes it;
* a clean stop starts no new POST and lets those in flight finish and record
  their answer (for up to ``stop_grace_s``), so a restart does not send a
  delivered row again.

Delivery is at least once: a crash (or a POST still unanswered after the stop
grace) between a 2xx and its commit sends the row again.  Every body carries an ``id`` (and the ``X-Sipcore-Delivery``
header) for the receiver to drop a repeat.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from sipcore import __version__
from sipcore.errors import SipcoreError
from sipcore.store.billing_alerts import AlertsStore, OutboxRow

log = logging.getLogger(__name__)


class WebhookError(SipcoreError):
    """A webhook POST failed (connection, timeout, malformed answer)."""


async def post_json(url: str, body: bytes, *, timeout_s: float = 10.0, headers: dict[str, str] | None = None) -> int:
    """POST ``body`` as JSON to ``url`` (http:// or https://); the response status code.

    Raises :class:`WebhookError` when no status line arrives in ``timeout_s``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"{url}: only http:// and https:// URLs can be posted to")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise WebhookError(f"{url}: {e}") from None
    host = parts.hostname
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = f"[{host}]" if ":" in host else host
    if parts.port:
        host_header += f":{parts.port}"
    head = [
        f"POST {target} HTTP/1.1",
        f"Host: {host_header}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"User-Agent: sipcore/{__version__}",
        "Connection: close",
    ]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body

    async def exchange() -> int:
        ctx = ssl.create_default_context() if parts.scheme == "https" else None
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
        try:
            writer.write(request)
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass
        fields = status_line.decode("latin-1").split(None, 2)
        if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
            raise WebhookError(f"{url}: not an HTTP response: {status_line[:80]!r}")
        return int(fields[1])

    try:
        return await asyncio.wait_for(exchange(), timeout_s)
    except TimeoutError:
        raise WebhookError(f"{url}: no answer within {timeout_s:g} s") from None
    except (OSError, ssl.SSLError, UnicodeError) as e:
        raise WebhookError(f"{url}: {e.strerror if isinstance(e, OSError) and e.strerror else e}") from None


Poster = Callable[[str, bytes], Awaitable[int]]


class WebhookWorker:
    """Delivers the webhook outbox in the background; :meth:`notify` wakes it up.

    ``start()`` in the server's loop after the store is open, ``notify()``
    after each :meth:`~sipcore.store.billing_alerts.AlertsStore.record_alerts`
    that queued something (or let the poll find it), ``await stop()`` before
    closing the store.  :meth:`deliver_due` is one pass, for tests and the CLI.
    """

    def __init__(
        self,
        store: AlertsStore,
        *,
        timeout_s: float = 10.0,
        backoff_ms: int = 1_000,
        max_backoff_ms: int = 3_600_000,
        max_attempts: int = 12,
        poll_s: float = 30.0,
        concurrency: int = 8,
        stop_grace_s: float = 5.0,
        post: Poster | None = None,
    ) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.backoff_ms = backoff_ms
        self.max_backoff_ms = max_backoff_ms
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self.stop_grace_s = stop_grace_s
        self._post = post
        self._stopping = False
        self._sem = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def retry_delay_ms(self, attempts: int) -> int:
        """Delay before the next attempt after ``attempts`` failed ones: exponential, capped."""
        return int(min(self.max_backoff_ms, self.backoff_ms * 2 ** max(0, attempts - 1)))

    async def _send(self, row: OutboxRow) -> bool:
        async with self._sem:
            if self._stopping:
                return False  # left due: the next start sends it
            attempts = row.attempts + 1
            try:
                if self._post is not None:
                    status = await self._post(row.url, row.body.encode())
                else:
                    headers = {"X-Sipcore-Delivery": str(row.id)}
                    status = await post_json(row.url, row.body.encode(), timeout_s=self.timeout_s, headers=headers)
                error = None if 200 <= status < 300 else f"HTTP {status}"
            except WebhookError as e:
                error = str(e)
            now = self.store.now_ms()
            if error is None:
                await self.store.webhook_attempted(row.id, now, delivered=True)
                log.info("webhook %d delivered to %s (attempt %d)", row.id, row.url, attempts)
                return True
            retry = now + self.retry_delay_ms(attempts) if attempts < self.max_attempts else None
            await self.store.webhook_attempted(row.id, now, delivered=False, error=error, retry_at_ms=retry)
            if retry is None:
                log.error("webhook %d to %s given up after %d attempts: %s", row.id, row.url, attempts, error)
            else:
                log.warning("webhook %d to %s failed (attempt %d): %s; retry in %d ms",
                            row.id, row.url, attempts, error, retry - now)  # fmt: skip
            return False

    async def deliver_due(self) -> int:
        """POST every row due now (concurrently, bounded); returns how many were delivered."""
        rows = await self.store.due_webhooks(self.store.now_ms())
        return sum(await asyncio.gather(*(self._send(r) for r in rows)))

    def notify(self) -> None:
        """Something was queued: deliver it now rather than at the next poll.  Never blocks."""
        self._wake.set()

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sipcore-webhooks")
        return self._task

    async def stop(self) -> None:
        """Start no new POST; wait up to ``stop_grace_s`` for those in flight to
        record their answer, then cancel.  Cancelling at once would drop the
        commit of a POST the receiver already has, and the next start would
        send it again."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            done, _ = await asyncio.wait({task}, timeout=self.stop_grace_s)
        except asyncio.CancelledError:  # our caller was cancelled: so is the worker
            task.cancel()
            raise
        if not done:
            log.warning("webhook delivery still busy after %g s: stopped; unanswered POSTs are sent again at start",
                        self.stop_grace_s)  # fmt: skip
            task.cancel()
        # Never raises: whatever became of the worker, the server's stop must
        # go on to flush the writer and close the store.
        await asyncio.gather(task, return_exceptions=True)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery had stopped on an error: %r", task.exception())

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.deliver_due()
                if self._stopping:
                    return
                due = await self.store.next_webhook_due_ms()
            except SipcoreError as e:  # the store is busy or gone for a moment: try again later
                log.warning("webhook outbox: %s", e)
                due = None
            if self._stopping:
                return
            wait = self.poll_s
            if due is not None:
                wait = min(wait, max(0.05, (due - self.store.now_ms()) / 1000))
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass
