"""``trialaudit serve`` with several workers: uvicorn's supervisor, with the connections spread evenly.

uvicorn's workers share one listening socket and each accepts whatever it finds pending when its
event loop wakes: the first to wake takes a whole burst. Clients keep their connections (HTTP
keep-alive), so an uneven split lasts: in the HTTP benchmark the 16 connections of wrk were split
7/9 or 10/6, but also 14/2 and 16/0, and then one worker (one core, one GIL) served nearly every
command while the other idled.

Here each worker accepts one connection at a time, itself (not through uvicorn's server), and only
while no other worker holds fewer open connections: the workers publish their counts in a small
shared file (one 64-bit slot each, ``ConnectionCounts``). A worker that holds more leaves the
pending connection to the others for up to ``MAX_DEFERRALS`` x ``DEFER_SECONDS``, then accepts it
anyway, so a busy, hung or dead worker delays a new connection by a few milliseconds at most.
Everything else (health checks, restarts, signals, graceful shutdown) is uvicorn's.

Every worker also freezes what its start-up allocated out of the cyclic garbage collector's reach
(``gc.freeze``): about 120,000 objects (modules, functions, FastAPI and pydantic models) that never
die, which every full collection walked again, 40 to 65 ms with the GIL held, every 5 to 8 s under
load. A command that arrived then, or that held the store's cross-process write lock then (the other
worker waited too), took that much longer: most of the benchmark's p99.9 (then 50 to 75 ms).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import mmap
import os
import socket
import struct
import sys
import tempfile
from typing import Any

from uvicorn import Config, Server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

logger = logging.getLogger("uvicorn.error")

#: how long a worker that holds more connections than another leaves a pending one to the others
DEFER_SECONDS = 0.001
MAX_DEFERRALS = 4

_SLOT = struct.Struct("<q")


class ConnectionCounts:
    """Open connections per worker, in a file shared by the workers of one server (memory-mapped)."""

    def __init__(self, path: str, workers: int):
        self.path = path
        self.workers = workers
        self._map: mmap.mmap | None = None

    @classmethod
    def create(cls, workers: int) -> ConnectionCounts:
        fd, path = tempfile.mkstemp(prefix="trialaudit-connections-")
        try:
            os.write(fd, bytes(_SLOT.size * workers))
        finally:
            os.close(fd)
        return cls(path, workers)

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            fd = os.open(self.path, os.O_RDWR)
            try:
                self._map = mmap.mmap(fd, _SLOT.size * self.workers)
            finally:
                os.close(fd)
        return self._map

    def set(self, worker: int, count: int) -> None:
        _SLOT.pack_into(self._mapped(), worker * _SLOT.size, count)

    def get(self, worker: int) -> int:
        return _SLOT.unpack_from(self._mapped(), worker * _SLOT.size)[0]

    def fewest_elsewhere(self, worker: int) -> int | None:
        """The fewest connections any other worker holds (None with one worker)."""
        m = self._mapped()
        others = [_SLOT.unpack_from(m, i * _SLOT.size)[0] for i in range(self.workers) if i != worker]
        return min(others) if others else None

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    def remove(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def __getstate__(self) -> dict[str, Any]:  # sent to the worker processes: path and size only
        return {"path": self.path, "workers": self.workers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["workers"])


class AppServer(Server):
    """uvicorn's server; once the application has started, what start-up allocated is frozen out of
    the cyclic garbage collector's full collections (it lives as long as the process)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            gc.collect()  # what start-up left as garbage is freed, not frozen
            gc.freeze()


class BalancedServer(AppServer):
    """A uvicorn worker that accepts from the shared socket itself, one connection at a time, and
    only while no other worker holds fewer connections (or after a few short deferrals)."""

    def __init__(self, config: Config, counts: ConnectionCounts, worker: int):
        super().__init__(config)
        self.counts = counts
        self.worker = worker
        self._listener: socket.socket | None = None
        self._pending = 0
        self._deferrals = 0
        self._watching = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if not sockets:
            await super().startup(sockets=sockets)
            return
        await super().startup(sockets=[])  # the lifespan, and no uvicorn server: this worker accepts
        if not self.started:
            return
        (self._listener,) = sockets
        self._listener.setblocking(False)
        self._listener.listen(self.config.backlog)
        config = self.config

        def create_protocol() -> asyncio.Protocol:
            protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state)
            lost = protocol.connection_lost

            def connection_lost(exc: Exception | None) -> None:
                lost(exc)
                self._publish()

            protocol.connection_lost = connection_lost  # type: ignore[method-assign]
            return protocol

        self._create_protocol = create_protocol
        self._publish()
        self._watch()
        logger.info("Worker %d accepting connections, balanced with the other workers [%d]", self.worker, os.getpid())

    def _open(self) -> int:
        return len(self.server_state.connections) + self._pending

    def _publish(self) -> None:
        self.counts.set(self.worker, self._open())

    def _watch(self) -> None:
        if self._listener is not None and not self._watching and not self.should_exit:
            asyncio.get_running_loop().add_reader(self._listener.fileno(), self._on_pending)
            self._watching = True

    def _unwatch(self) -> None:
        if self._watching:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._watching = False

    def _on_pending(self) -> None:
        fewest = self.counts.fewest_elsewhere(self.worker)
        if fewest is not None and self._open() > fewest and self._deferrals < MAX_DEFERRALS:
            self._deferrals += 1  # another worker has fewer: leave this one to it for a moment
            self._unwatch()
            asyncio.get_running_loop().call_later(DEFER_SECONDS, self._watch)
            return
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker took it
        except OSError as e:  # out of file descriptors, say: try again a little later
            logger.warning("accept failed: %s", e)
            self._unwatch()
            asyncio.get_running_loop().call_later(0.1, self._watch)
            return
        self._deferrals = 0
        self._pending += 1
        self._publish()
        task = asyncio.get_running_loop().create_task(self._connect(conn))
        self.server_state.tasks.add(task)
        task.add_done_callback(self.server_state.tasks.discard)

    async def _connect(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        try:
            await asyncio.get_running_loop().connect_accepted_socket(self._create_protocol, conn, ssl=self.config.ssl)
        except Exception as e:
            logger.warning("could not serve an accepted connection: %s", e)
            conn.close()
        finally:
            self._pending -= 1
            self._publish()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._unwatch()
        self._listener = None
        await super().shutdown(sockets=sockets)


class _BalancedProcess(Process):
    def __init__(self, config: Config, sockets: list[socket.socket], counts: ConnectionCounts, worker: int):
        self.counts = counts
        self.worker = worker
        super().__init__(config, sockets)

    @property
    def server(self) -> Server:
        if self._server is None:
            self.counts.set(self.worker, 0)  # a replaced worker's connections are gone
            self._server = BalancedServer(self.config, self.counts, self.worker)
        return self._server


class BalancedMultiprocess(Multiprocess):
    """uvicorn's supervisor, whose workers are ``BalancedServer``s (worker i replaced by worker i)."""

    def __init__(self, config: Config, sockets: list[socket.socket]):
        super().__init__(config, sockets)
        self.counts = ConnectionCounts.create(self.processes_num)

    def _process(self, worker: int) -> Process:
        return _BalancedProcess(self.config, self.sockets, self.counts, worker)

    def init_processes(self) -> None:
        for worker in range(self.processes_num):
            process = self._process(worker)
            process.start()
            self.processes.append(process)

    def restart_all(self) -> None:
        """As uvicorn's: each replacement in service before its old worker is retired."""
        for idx, old_process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new_process = self._process(idx)
            new_process.start()
            if not new_process.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new_process.kill()
                new_process.join()
                if not self.should_exit.is_set():
                    logger.error(f"New child process [{new_process.pid}] was not ready in time; "
                                 f"keeping worker [{old_process.pid}] and aborting the restart.")
                return
            old_process.terminate()
            old_process.join()
            self.processes[idx] = new_process

    def keep_subprocess_alive(self) -> None:
        """As uvicorn's, replacing a dead worker with one in the same slot."""
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                logger.error(f"Child process [{process.pid}] failed to start, stopping the parent process.")
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info(f"Child process [{process.pid}] died")
            process = self._process(idx)
            process.start()
            self.processes[idx] = process

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.counts.remove()


def serve(app: str, *, host: str, port: int, workers: int, **options: Any) -> None:
    """As ``uvicorn.run(app, factory=True, ...)`` with ``AppServer``s; with several workers, their
    connections balanced (``BalancedMultiprocess``)."""
    config = Config(app, factory=True, host=host, port=port, workers=max(1, workers), **options)
    if config.workers == 1:
        config.load_app()
        server = AppServer(config)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    sock = config.bind_socket()
    try:
        BalancedMultiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
