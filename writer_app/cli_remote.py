"""`complete` and `generate` against a completions server (--server URL).

    writer-app complete --server URL [--api-key KEY] [--server-model NAME] PROMPT
    writer-app generate --server URL --concurrency N --prompts FILE --n N --out FILE.jsonl

The key may also come from WRITER_APP_API_KEY (so it stays out of shell history).
`generate` keeps N requests in flight, so a server's continuous batching works for you,
writes each JSONL line as soon as its sample finishes (in finishing order; every line
carries prompt_index and sample_index), and a run interrupted for any reason resumes:
samples already in --out are skipped. Failures end as one line on stderr, exit code 2.

Only argparse is imported at module level: cli.py adds these flags on every start.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from writer_app.cli_common import (
    CliError,
    SampleProgress,
    read_prompts,
    sampling_from_args,
    write_out,
)

if TYPE_CHECKING:
    import asyncio

    from writer_app.engine.remote import RemoteClient
    from writer_app.engine.remote_config import RemoteConfig
    from writer_app.engine.sampling import SamplingSettings

PRECEDING_CHARS = 64  # as much prompt text as the sentence stop rule looks at
MAX_CONCURRENCY = 64


def add_server_flags(parser: argparse.ArgumentParser, *, concurrency: bool = False) -> None:
    group = parser.add_argument_group("remote server (OpenAI-compatible /v1/completions)")
    group.add_argument("--server", metavar="URL",
                       help="generate on this server instead of a local model, e.g. http://localhost:8080/v1")
    group.add_argument("--api-key", metavar="KEY",
                       help="the server's API key (default: $WRITER_APP_API_KEY)")
    group.add_argument("--server-model", metavar="NAME",
                       help="the server's model (default: the first it lists)")
    group.add_argument("--timeout", type=float, default=30.0, metavar="S",
                       help="give up when the server sends nothing for S seconds (default 30)")
    if concurrency:
        group.add_argument("--concurrency", type=int, default=1, metavar="N",
                           help="requests in flight at once (default 1)")


def refuse_server_flags_without_server(args: argparse.Namespace) -> None:
    """--api-key, --server-model, --concurrency mean nothing for a local model: say so
    rather than ignore them."""

    given = [flag for flag, value in (("--api-key", args.api_key), ("--server-model", args.server_model),
                                      ("--concurrency", getattr(args, "concurrency", 1) != 1 or None))
             if value is not None]
    if given:
        raise CliError(f"{given[0]} needs --server URL (it is for a remote server)")


def run(args: argparse.Namespace) -> int:

    if getattr(args, "model", None):
        raise CliError("--model and --server exclude each other: the server's model is --server-model")
    config = _config(args)
    if config.is_plain_http_to_another_machine:
        print(f"warning: {config.host} is reached over plain http://: your text crosses the "
              "network unencrypted", file=sys.stderr)
    if args.command == "complete":
        return _run_async(_complete(args, config))
    return _run_async(_generate(args, config))


def _config(args: argparse.Namespace) -> RemoteConfig:
    from writer_app.engine.remote_config import API_KEY_ENV, RemoteConfig
    from writer_app.engine.remote_errors import RemoteConfigError

    if not args.timeout > 0:
        raise CliError("--timeout must be more than 0 seconds")
    key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV, "")
    try:
        return RemoteConfig.create(args.server, key, args.server_model or "", read_timeout=args.timeout)
    except RemoteConfigError as error:
        raise CliError(str(error)) from None


def _run_async(coroutine: object) -> int:
    import asyncio

    from writer_app.engine.remote_errors import RemoteError

    try:
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    except RemoteError as error:
        raise CliError(str(error)) from None


def _client(config: RemoteConfig) -> RemoteClient:
    from writer_app.engine.remote import RemoteClient, gpt2_tokenizer

    return RemoteClient(config, gpt2_tokenizer())


# ---- complete -----------------------------------------------------------------------------


async def _complete(args: argparse.Namespace, config: RemoteConfig) -> int:
    from writer_app.engine.protocol import FinishEvent, GenerationRequest
    from writer_app.engine.remote import prompt_ids_for

    settings = sampling_from_args(args)
    if not args.prompt.strip():
        raise CliError("the prompt is empty")
    client = _client(config)
    try:
        info = await client.connect()
        ids = prompt_ids_for(args.prompt, client.tokenizer, info.n_ctx)
        request = GenerationRequest(1, tuple(ids), settings, preceding_text=args.prompt[-PRECEDING_CHARS:])
        async for event in client.generate(request):
            text = event.tail_text if isinstance(event, FinishEvent) else event.text
            if text:
                write_out(text)
        write_out("\n")
    finally:
        await client.aclose()
    return 0


# ---- generate -----------------------------------------------------------------------------


def done_samples(out_path: Path) -> set[tuple[int, int]]:
    """(prompt index, sample index) of every complete line already in --out. A last line
    cut short by an interruption is removed, so the file stays valid JSONL."""
    if not out_path.exists():
        return set()
    data = out_path.read_bytes()
    complete_end = data.rfind(b"\n") + 1
    if complete_end < len(data):
        with out_path.open("r+b") as handle:
            handle.truncate(complete_end)
    done: set[tuple[int, int]] = set()
    for line in data[:complete_end].decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
            done.add((int(record["prompt_index"]), int(record["sample_index"])))
        except (ValueError, KeyError, TypeError):
            continue  # a line from elsewhere: kept, not counted
    return done


async def _generate(args: argparse.Namespace, config: RemoteConfig) -> int:

    settings = sampling_from_args(args)
    if args.n < 1:
        raise CliError("--n must be at least 1")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        raise CliError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    prompts = read_prompts(Path(args.prompts))
    out_path = Path(args.out)
    if not out_path.parent.exists():
        raise CliError(f"output folder does not exist: {out_path.parent}")
    try:
        done = done_samples(out_path)
    except OSError as error:
        raise CliError(f"cannot read {out_path}: {error.strerror or error}") from None
    # A fixed --seed makes the whole file reproducible: sample k of prompt p gets seed+k.
    base_seed = settings.seed if settings.seed >= 0 else int(time.time_ns() % 2**31)
    jobs = [(p, k) for p in range(len(prompts)) for k in range(args.n) if (p, k) not in done]
    progress = SampleProgress(len(prompts) * args.n, len(prompts) * args.n - len(jobs))
    if not jobs:
        return 0
    client = _client(config)
    try:
        info = await client.connect()
        with out_path.open("a", encoding="utf-8") as out:
            writer = _SampleWriter(client, info.model, config.host, prompts, settings, base_seed, out, progress)
            await writer.run(jobs, args.concurrency)
    except OSError as error:
        raise CliError(f"cannot write {out_path}: {error.strerror or error}") from None
    finally:
        await client.aclose()
    return 0


class _SampleWriter:
    """N workers over one queue of samples; each line is written the moment it is done."""

    def __init__(self, client: RemoteClient, model: str, host: str, prompts: list[str],
                 settings: SamplingSettings, base_seed: int, out: TextIO, progress: SampleProgress) -> None:
        self.client, self.model, self.host, self.prompts = client, model, host, prompts
        self.settings, self.base_seed, self.out, self.progress = settings, base_seed, out, progress
        self.request_id = 0

    async def run(self, jobs: list[tuple[int, int]], concurrency: int) -> None:
        import asyncio

        queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)
        workers = [asyncio.create_task(self._work(queue)) for _ in range(min(concurrency, len(jobs)))]
        try:
            await asyncio.gather(*workers)
        finally:  # the first failure stops the others; what is written stays
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _work(self, queue: asyncio.Queue[tuple[int, int]]) -> None:
        from writer_app.engine.protocol import FinishEvent, GenerationRequest
        from writer_app.engine.remote import prompt_ids_for

        n_ctx = self.client.info.n_ctx if self.client.info else 1024
        while not queue.empty():
            p, k = queue.get_nowait()
            prompt = self.prompts[p]
            seed = (self.base_seed + k) % 2**31
            self.request_id += 1
            request = GenerationRequest(
                self.request_id, tuple(prompt_ids_for(prompt, self.client.tokenizer, n_ctx)),
                self.settings.with_changes(seed=seed), preceding_text=prompt[-PRECEDING_CHARS:],
            )
            async for event in self.client.generate(request):
                if isinstance(event, FinishEvent):
                    finish = event
            record = {"prompt": prompt, "prompt_index": p, "sample_index": k, "text": finish.text,
                      "model": self.model, "server": self.host, "settings": self.settings.to_dict(),
                      "seed": seed, "finish": finish.reason.value}
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.out.flush()
            self.progress.advance()
