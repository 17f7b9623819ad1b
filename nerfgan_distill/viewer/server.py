"""The viewer's web app (Starlette, served by uvicorn): the page, and frames over a WebSocket.

Each connection keeps only its newest render request: a request that arrives while an older one
waits replaces it (the reply counts the dropped ones), so a dragged view follows the mouse and a
flood of messages holds one request per connection. Frames are rendered by one worker thread for
all connections (the model is not re-entrant; tabs take turns), and at most `max_clients`
connections are served, so the work in flight is bounded. A bad message gets an error reply and
the connection stays usable; a failed render too.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from .protocol import MAX_MESSAGE_CHARS, ProtocolError, parse_message

__all__ = ["create_app", "serve", "running", "open_socket", "LatestRequest", "LOOPBACK_HOSTS"]

STATIC = Path(__file__).with_name("static")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
TOO_MANY_CLIENTS = 1013  # WebSocket close code "try again later"
log = logging.getLogger("nerfgan_distill.viewer")


class LatestRequest:
    """A one-place mailbox: put() replaces what is waiting, take() waits for something."""

    def __init__(self):
        self._item, self._ready = None, asyncio.Event()
        self.dropped = 0

    def put(self, item) -> None:
        if self._item is not None:
            self.dropped += 1
        self._item = item
        self._ready.set()

    async def take(self):
        await self._ready.wait()
        item, self._item = self._item, None
        self._ready.clear()
        dropped, self.dropped = self.dropped, 0
        return item, dropped


class _Connection:
    def __init__(self, websocket: WebSocket, renderer, executor):
        self.websocket, self.renderer, self.executor = websocket, renderer, executor
        self.requests = LatestRequest()
        self._send_lock = asyncio.Lock()

    async def send(self, message: dict) -> None:
        async with self._send_lock:
            await self.websocket.send_json(message)

    async def error(self, text: str, request_id=None) -> None:
        await self.send({"type": "error", "message": text, "id": request_id})

    async def receive_loop(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                request = parse_message(message.get("text"), self.renderer.limits)
            except ProtocolError as error:
                await self.error(str(error), error.request_id)
                continue
            if request["type"] == "info":
                await self.send(self.renderer.info())
            else:
                self.requests.put(request)

    async def render_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            request, dropped = await self.requests.take()
            try:
                frame = await loop.run_in_executor(self.executor, self.renderer.render, request["view"])
            except Exception as error:  # a failed frame is reported; the server and the connection go on
                log.exception("render failed for %s", request["view"])
                await self.error(f"render failed: {type(error).__name__}: {error}", request["id"])
                continue
            await self.send({"type": "frame", "id": request["id"], "view": request["view"].to_json(),
                             "clamped": request["clamped"], "dropped": dropped, **frame})


async def _frames_socket(websocket: WebSocket) -> None:
    state = websocket.app.state
    await websocket.accept()
    if state.clients >= state.max_clients:
        await websocket.send_json({"type": "error", "message": f"the viewer serves at most {state.max_clients} "
                                                               "connections at once; close another tab"})
        await websocket.close(code=TOO_MANY_CLIENTS)
        return
    state.clients += 1
    connection = _Connection(websocket, state.renderer, state.executor)
    tasks = []
    try:
        await connection.send(state.renderer.info())
        tasks = [asyncio.create_task(connection.receive_loop()), asyncio.create_task(connection.render_loop())]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = task.exception()
            if error is not None and not isinstance(error, WebSocketDisconnect):
                log.error("connection closed after an error: %r", error)
    except WebSocketDisconnect:
        pass
    finally:
        for task in tasks:
            task.cancel()
        state.clients -= 1


async def _page(request):
    return FileResponse(STATIC / "index.html")


async def _info(request):
    return JSONResponse(request.app.state.renderer.info())


def create_app(renderer, max_clients: int = 8) -> Starlette:
    """The viewer for a viewer.FrameRenderer; frames render on one thread, closed with the app."""
    if isinstance(max_clients, bool) or not isinstance(max_clients, int) or max_clients < 1:
        raise ValueError(f"create_app: max_clients must be an int >= 1, got {max_clients!r}")
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="viewer-render")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = Starlette(routes=[Route("/", _page), Route("/api/info", _info), WebSocketRoute("/ws", _frames_socket),
                            Mount("/static", StaticFiles(directory=STATIC), name="static")], lifespan=lifespan)
    app.state.renderer, app.state.executor = renderer, executor
    app.state.max_clients, app.state.clients = max_clients, 0
    return app


def open_socket(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); port 0 picks a free one. OSError (e.g. the port is in
    use) names the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.listen(64)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _server(app, sock):
    import uvicorn

    # ws_max_size bounds a message before it is parsed; uvicorn's own log stays quiet.
    config = uvicorn.Config(app, log_level="warning", ws_max_size=4 * MAX_MESSAGE_CHARS, lifespan="on")
    return uvicorn.Server(config)


def serve(app, sock: socket.socket) -> None:
    """Serve `app` on a socket from open_socket until interrupted."""
    _server(app, sock).run(sockets=[sock])


@contextlib.contextmanager
def running(app, host: str = "127.0.0.1", port: int = 0):
    """Serve `app` from a background thread while the block runs; yields the page's URL."""
    sock = open_socket(host, port)
    server = _server(app, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            if not thread.is_alive():
                raise RuntimeError("the viewer's server stopped while starting")
            threading.Event().wait(0.01)
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
