"""llama.cpp's own HTTP server (xllamacpp) for the remote benchmark, in a child process.

The served GGUF is written here from the benchmark's GGML file: the q4_0 tensors
byte-copied as writer_app.engine.gguf_convert does, but with the plain GPT-2 tokenizer
(NORMAL tokens and GPT-2's own merges, as tests/support/gguf_models.py writes it), not
the app's raw-piece marking: a server others talk to must tokenize text itself.

Run as a script it serves until its stdin closes, so it never outlives the benchmark:
    python -m benchmarks.remote_server MODEL.gguf PORT THREADS SLOTS SLOT_CTX   (key: env)
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "WRITER_APP_BENCH_SERVER_KEY"
MODEL_ALIAS = "bench-gpt2"
TOKEN_TYPE_NORMAL, TOKEN_TYPE_CONTROL = 1, 3


def served_gguf(ggml_path: Path) -> Path:
    """The GPT-2 GGUF llama-server serves for `ggml_path`, written once beside it."""
    from writer_app.engine.ggml import read_layout
    from writer_app.engine.gguf_convert import plan_from_ggml, write_atomically, write_gguf

    target = ggml_path.with_name(ggml_path.name + ".served.gguf")
    if target.is_file() and target.stat().st_mtime >= ggml_path.stat().st_mtime:
        return target
    plan = plan_from_ggml(read_layout(ggml_path))
    write_atomically(target, lambda path: write_gguf(plan, path, name=MODEL_ALIAS,
                                                     add_tokenizer=_add_gpt2_tokenizer))
    return target


def _add_gpt2_tokenizer(writer, vocab: list[bytes], eos: int | None) -> None:  # type: ignore[no-untyped-def]
    from tests.support.gpt2_vocab import GPT2_BPE_DIR
    from writer_app.engine.gguf_check import token_string

    merges = [line for line in (GPT2_BPE_DIR / "vocab.bpe").read_text("utf-8").splitlines()[1:] if line.strip()]
    types = [TOKEN_TYPE_NORMAL] * len(vocab)
    if eos is not None:
        types[eos] = TOKEN_TYPE_CONTROL
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list([token_string(t) for t in vocab])
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    if eos is not None:
        writer.add_bos_token_id(eos)
        writer.add_eos_token_id(eos)
    writer.add_add_bos_token(False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BenchServer:
    """llama-server on 127.0.0.1:<free port> with an API key; `with` stops it whatever happens."""

    def __init__(self, gguf_path: Path, *, n_ctx: int, threads: int, parallel: int, api_key: str) -> None:
        self.gguf_path, self.n_ctx, self.api_key = gguf_path, n_ctx, api_key
        self.threads, self.parallel = threads, parallel
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> BenchServer:
        env = {**os.environ, "PYTHONPATH": str(REPO), KEY_ENV: self.api_key}
        args = [sys.executable, "-m", "benchmarks.remote_server", str(self.gguf_path), str(self.port),
                str(self.threads), str(self.parallel), str(self.n_ctx)]
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, env=env, cwd=REPO)
        try:
            self._wait_healthy(timeout=120.0)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode}")
            health = f"http://127.0.0.1:{self.port}/health"
            with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(health, timeout=1) as reply:
                if reply.status == 200:
                    return
            time.sleep(0.1)  # polling a child process
        raise RuntimeError("llama-server did not become healthy in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve(model: str, port: int, threads: int, parallel: int, slot_ctx: int) -> None:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = model
    params.model_alias = {MODEL_ALIAS}
    params.hostnames = ["127.0.0.1"]
    params.port = port
    # llama.cpp splits n_ctx between the slots: each gets the model's whole context
    # (GPT-2 cannot go past its position table), so no request is cut short.
    params.n_ctx = slot_ctx * parallel
    params.n_parallel = parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.api_keys = [os.environ[KEY_ENV]]
    server = xllamacpp.Server(params)
    assert server.listening_address
    sys.stdin.read()  # until the parent closes our stdin or dies


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
