"""llama.cpp's own HTTP server (through xllamacpp) on 127.0.0.1, in a child process.

A child process, not a thread of the test process: tests kill it mid-stream, restart it
on the same port, and the native server never shares the test process's GIL or signals.
Run as a script it serves one GGUF file until stdin closes (so it never outlives the
test that started it):  python -m tests.support.llama_server MODEL PORT [API_KEY]
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parents[2]
MODEL_ALIAS = "test-gpt2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """Start with start(); base_url is http://127.0.0.1:PORT/v1."""

    def __init__(self, model: Path, *, port: int | None = None, api_key: str = "") -> None:
        self.model, self.api_key = Path(model), api_key
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 60.0) -> LlamaServer:
        args = [sys.executable, "-m", "tests.support.llama_server", str(self.model), str(self.port)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if self.api_key:
            env["TEST_LLAMA_API_KEY"] = self.api_key
        self._process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env, cwd=ROOT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"llama server exited with {self._process.returncode}")
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)  # polling a child process, not Qt
        self.kill()
        raise RuntimeError("llama server did not become healthy")

    def kill(self) -> None:
        """Stop at once, as a crash or a pulled cable would (open streams are cut)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _serve(model: str, port: int) -> None:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = model
    params.model_alias = {MODEL_ALIAS}
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = 0  # the model's own context (GPT-2 cannot go past its position table)
    params.n_parallel = 4
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.warmup = False
    key = os.environ.get("TEST_LLAMA_API_KEY", "")
    if key:
        params.api_keys = [key]
    server = xllamacpp.Server(params)
    assert server.listening_address
    sys.stdin.read()  # until the parent closes our stdin or dies


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
