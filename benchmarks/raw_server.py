"""A raw engine (ctransformers, or llama.cpp through raw_llama.RawLlama) in a helper
process, so the app and the raw reference can take turns on the same file while the
machine's load is the same for both.

    with RawServer(path, threads=1, engine="llama.cpp") as raw:
        raw.prepare(prompt_text)          # evaluate the prompt once
        wall, cpu = raw.generate(64, seed=1)  # ms per token, hot cache, like an app request
        raw.complete(64, seed=1)          # the same after other work (the prompt read again first)
        raw.workload(prompts, n=1, tokens=32)  # tokens/s: `writer-app generate`'s work

Turns never overlap (each call waits for its answer), so the two never compete for
the CPU; the app's own engine runs in yet another process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from multiprocessing.connection import Connection
from pathlib import Path


def _open(path: str, threads: int, engine: str):  # type: ignore[no-untyped-def]
    if engine == "llama.cpp":
        from benchmarks.raw_llama import RawLlama, gguf_of, model_context

        gguf = gguf_of(Path(path))
        return RawLlama(gguf, threads, n_ctx=model_context(gguf))
    from benchmarks.raw_bench import RawBench

    return RawBench(Path(path), threads)


def _serve(conn: Connection, path: str, threads: int, engine: str) -> None:
    from tests.support.gpt2_vocab import encode

    bench = _open(path, threads, engine)
    conn.send(("loaded", bench.load_s))
    prompt: list[int] = []
    while True:
        try:
            command, *args = conn.recv()
        except EOFError:
            return
        if command == "prepare":
            prompt = encode(args[0])
            bench.reset()
            conn.send(("prepared", bench.read_ms(prompt), len(prompt)))
        elif command in ("generate", "complete"):
            if command == "complete":
                bench.read_ms(prompt)  # what a workload in between left out of the cache; untimed
            wall_ms = bench.generate_ms_per_token(prompt, args[0], args[1])
            conn.send(("generated", wall_ms, bench.last_cpu_ms_per_token))
        elif command == "workload":
            from benchmarks.raw_llama import workload

            done = workload(bench, [encode(text) for text in args[0]], args[1], args[2])
            conn.send(("worked", done["tokens_per_s"]))
        else:
            return


class RawServerError(RuntimeError):
    """The raw engine's helper process failed or died."""


class RawServer:
    def __init__(
        self, path: str | Path, *, threads: int = 1, engine: str = "ctransformers", timeout_s: float = 600.0
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, str(path), threads, engine), name=f"raw-{engine}", daemon=True
        )
        self._process.start()
        child.close()
        self._timeout_s = timeout_s
        self.load_s = float(self._receive("loaded")[0])

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _receive(self, kind: str) -> tuple:
        if not self._conn.poll(self._timeout_s):
            raise RawServerError(f"The raw engine process gave no answer ({kind}).")
        try:
            reply = self._conn.recv()
        except EOFError:
            raise RawServerError(
                f"The raw engine process died (exit code {self._process.exitcode})."
            ) from None
        if reply[0] != kind:
            raise RawServerError(f"The raw engine process answered {reply[0]!r}.")
        return reply[1:]

    def prepare(self, prompt_text: str) -> tuple[float, int]:
        """Evaluate the prompt from scratch: (milliseconds, prompt tokens)."""
        self._conn.send(("prepare", prompt_text))
        ms, tokens = self._receive("prepared")
        return float(ms), int(tokens)

    def generate(self, n_tokens: int, seed: int) -> tuple[float, float]:
        """(wall, CPU) milliseconds per token for n_tokens after the prepared prompt."""
        self._conn.send(("generate", n_tokens, seed))
        wall_ms, cpu_ms = self._receive("generated")
        return float(wall_ms), float(cpu_ms)

    def complete(self, n_tokens: int, seed: int) -> float:
        """Like generate(), after bringing the cache back to the prepared prompt (untimed):
        wall milliseconds per token."""
        self._conn.send(("complete", n_tokens, seed))
        wall_ms, _cpu_ms = self._receive("generated")
        return float(wall_ms)

    def workload(self, prompts: list[str], n: int, tokens: int) -> float:
        """`writer-app generate`'s work raw (raw_llama.workload): steady tokens/s."""
        self._conn.send(("workload", list(prompts), n, tokens))
        (tokens_per_s,) = self._receive("worked")
        return float(tokens_per_s)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(("quit",))
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
