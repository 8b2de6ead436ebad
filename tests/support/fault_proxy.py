"""A small fault-injecting TCP proxy in front of a real server, for tests.

Listens on 127.0.0.1 only, forwards bytes both ways, and misbehaves only for completion
requests (a client chunk holding "POST .../completions"), so discovery (/v1/models,
/tokenize) still works:

    busy_replies = n     answer the next n completion requests with `busy_status`
                         (429 by default; Retry-After: 0) and close that connection
    cut_after = n        close the client's connection once n bytes of a completion's
                         response went through (a cable pulled mid-stream)
    delay = s            hold every piece (server-sent event) of a completion's response
                         back s seconds, after the first `delay_after` pieces

It also counts completions in flight (request seen, "[DONE]" not yet), to show that a
client keeps N requests going, and hang-ups: completions the client closed before their
end (an edit, or the stop rule, ending a suggestion early). Bounded: at most MAX_CONNECTIONS at once, runs on its own
thread and event loop, stop() closes everything.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time

MAX_CONNECTIONS = 32
CHUNK = 65536
_EVENT_END = re.compile(rb"(?<=\n\n)")  # splits after each event, keeping its bytes


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.busy_replies = 0
        self.busy_status = 429
        self.cut_after: int | None = None
        self.delay = 0.0
        self.delay_after = 0  # pieces of a completion's response passed on before delays start
        self.completions = 0  # completion requests seen
        self.busy_sent = 0
        self.cuts = 0
        self.hangups = 0  # completions whose client closed the connection before the end
        self.requests: list[bytearray] = []  # each completion request as sent (head + body)
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FaultProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(timeout=10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def bodies(self) -> list[dict]:
        """The JSON bodies of the completion requests that arrived whole.

        A client may write a request's head on a kept-alive connection the server has just
        closed, and send the whole request again on a new one; the torn first attempt
        never reached the server, so it isn't a request.
        """
        whole = []
        for raw in self.requests:
            head, _, body = bytes(raw).partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
            if length is not None and len(body) >= int(length.group(1)) > 0:
                whole.append(json.loads(body[: int(length.group(1))]))
        return whole

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every connection has been wound up (counters are final then)."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            time.sleep(0.01)  # the proxy's own thread does the work; not a Qt wait
        if self._tasks:
            raise TimeoutError("the proxy still has open connections")

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            async with self._slots:
                await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            return  # upstream down: the client sees its connection closed
        state = _Connection()
        upward = asyncio.create_task(self._client_to_upstream(client_r, client_w, up_w, state))
        downward = asyncio.create_task(self._upstream_to_client(up_r, client_w, state))
        try:
            await asyncio.wait({upward, downward}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (upward, downward):
                task.cancel()
            await asyncio.gather(upward, downward, return_exceptions=True)
            if state.in_completion and upward.done() and not upward.cancelled() and not state.cut:
                with self._lock:
                    self.hangups += 1
            self._end_completion(state)
            up_w.close()

    async def _client_to_upstream(self, client_r, client_w, up_w, state) -> None:  # type: ignore[no-untyped-def]
        while data := await client_r.read(CHUNK):
            if b"POST " in data and b"/completions" in data.split(b"\r\n", 1)[0]:
                with self._lock:
                    self.completions += 1
                    busy = self.busy_replies > 0
                    if busy:
                        self.busy_replies -= 1
                        self.busy_sent += 1
                if busy:
                    body = b'{"error":{"code":%d,"message":"injected: server busy"}}' % self.busy_status
                    client_w.write(
                        b"HTTP/1.1 %d Busy\r\nContent-Type: application/json\r\nRetry-After: 0\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (self.busy_status, len(body))
                        + body
                    )
                    await client_w.drain()
                    return
                self._begin_completion(state)
                state.request = bytearray()
                self.requests.append(state.request)
            if state.request is not None:
                state.request += data
            up_w.write(data)
            await up_w.drain()

    async def _upstream_to_client(self, up_r, client_w, state) -> None:  # type: ignore[no-untyped-def]
        while data := await up_r.read(CHUNK):
            # One server-sent event at a time, so a delay applies per token even when the
            # server was quicker than the network we pretend to be.
            for piece in _EVENT_END.split(data) if state.in_completion else (data,):
                if piece and not await self._forward(piece, client_w, state):
                    return

    async def _forward(self, data: bytes, client_w, state) -> bool:  # type: ignore[no-untyped-def]
        """Pass one piece on; False once the connection is cut."""
        if state.in_completion:
            state.pieces += 1
            if self.delay and state.pieces > self.delay_after:
                await asyncio.sleep(self.delay)
            state.sent += len(data)
            if self.cut_after is not None and state.sent >= self.cut_after:
                client_w.write(data[: max(0, len(data) - (state.sent - self.cut_after))])
                await client_w.drain()
                with self._lock:
                    self.cuts += 1
                state.cut = True
                return False
            if b"[DONE]" in data or b'"finish_reason":"' in data:
                self._end_completion(state)
        client_w.write(data)
        await client_w.drain()
        return True

    def _begin_completion(self, state: _Connection) -> None:
        with self._lock:
            state.in_completion, state.sent = True, 0
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _end_completion(self, state: _Connection) -> None:
        with self._lock:
            if state.in_completion:
                state.in_completion = False
                self.in_flight -= 1


class _Connection:
    def __init__(self) -> None:
        self.in_completion = False
        self.sent = 0
        self.cut = False
        self.pieces = 0
        self.request: bytearray | None = None

