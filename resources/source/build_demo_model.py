"""Build resources/models/demo-austen-gpt2.bin: a tiny GPT-2 trained on Jane Austen's novels.

    python resources/source/build_demo_model.py                # train + export (~25 min, 1 core)
    python resources/source/build_demo_model.py --extract /tmp/ja/usr/lib/R/site-library/janeaustenr

The model is a real GPT-2 (learned positions, pre-LN blocks, tanh GELU, final ln_f, tied
head), exported in the classic GGML format ctransformers loads with model_type="gpt2", and
it keeps GPT-2's full 50257-token vocabulary so it is tokenized exactly like real models.

Only the ~10k tokens that occur at least twice in the corpus are ever predicted. That is
exact, not approximate: hidden dimension 0 of ln_f has gain 0 and bias UNUSED_SHIFT, so it
is the constant UNUSED_SHIFT after the final norm. Every other token shares one embedding
row whose dimension 0 is -1 (the trained tokens have 0 there), so its logit is
-UNUSED_SHIFT plus a small learned term. Training computes the exact 50257-way softmax by
folding the identical unused logits into one term (+ log of their count). The same shared
row is the input embedding of any unused token a writer types, so the model learns to read
it: tokens seen only once in the corpus are replaced by it in the training inputs.

Requirements beyond the app's: torch (CPU). Deterministic for a given torch build and
thread count (set by --threads; 1 by default so it shares a busy machine politely).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import re
import struct
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SOURCE_DIR = Path(__file__).resolve().parent
REPO_ROOT = SOURCE_DIR.parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout: use this writer_app

from writer_app.engine.ggml import validate_model_file  # noqa: E402
from writer_app.engine.ggml_writer import write_gpt2  # noqa: E402
from writer_app.engine.quantize import round_trip  # noqa: E402
from writer_app.engine.tokenizer import Tokenizer  # noqa: E402

TEXT_DIR = SOURCE_DIR / "austen"
BPE_DIR = SOURCE_DIR / "gpt2-bpe"
OUTPUT = REPO_ROOT / "resources" / "models" / "demo-austen-gpt2.bin"
NOVELS = (  # the R object names in janeaustenr, publication order
    "sensesensibility",
    "prideprejudice",
    "mansfieldpark",
    "emma",
    "northangerabbey",
    "persuasion",
)
EOS_ID = 50256
UNUSED_SHIFT = 40.0  # unused tokens' logits sit this far below zero (exp(-40) ~ 4e-18)


@dataclass(frozen=True)
class Config:
    n_embd: int = 96
    n_layer: int = 4
    n_head: int = 4
    n_ctx: int = 256
    ftype: str = "q4_0"
    min_count: int = 2  # tokens seen fewer times are "unused": never predicted
    batch: int = 8
    steps: int = 1200
    lr: float = 3e-3
    warmup: int = 60
    weight_decay: float = 0.05
    qat_fraction: float = 0.25  # last part of training sees q4_0-rounded matrices
    val_fraction: float = 0.04  # the last 4% of every novel is held out
    seed: int = 1811  # Sense and Sensibility


# --- corpus ----------------------------------------------------------------------------


class _RUnserializer:
    """Just enough of R's XDR serialization (format 2/3) for janeaustenr's lazy-load DB:
    character vectors (STRSXP of CHARSXP), the index's lists, ints and names."""

    def __init__(self, data: bytes) -> None:
        if data[:2] != b"X\n":
            raise ValueError("not an R XDR serialization")
        self.data, self.pos, self.refs = data, 2, []
        version = self._int()
        self.pos += 8  # writer and minimum reader R versions
        if version == 3:
            self.pos += 4 + self._int()  # native encoding name

    def _int(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def read(self) -> object:
        flags = self._int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind in (241, 242, 247, 251, 252, 253, 254):  # environments, NULL, markers
            return None
        if kind == 255:  # reference to an earlier symbol
            return self.refs[(flags >> 8 or self._int()) - 1]
        if kind == 1:  # symbol: its name follows as a CHARSXP
            symbol = self.read()
            self.refs.append(symbol)
            return symbol
        if kind == 2:  # pairlist node (attributes): [attr] [tag] car cdr
            attributes = self.read() if has_attr else None
            tag = self.read() if has_tag else None
            return {"tag": tag, "value": self.read(), "next": self.read(), "attr": attributes}
        if kind == 9:  # CHARSXP: length (-1 is NA) + bytes
            length = self._int()
            if length < 0:
                return None
            text = self.data[self.pos : self.pos + length]
            self.pos += length
            return text
        if kind in (10, 13, 16, 19):  # logical, integer, character, list
            length = self._int()
            if kind in (10, 13):
                values = list(struct.unpack_from(f">{length}i", self.data, self.pos))
                self.pos += 4 * length
            else:
                values = [self.read() for _ in range(length)]
            attributes = self.read() if has_attr else None
            return {"values": values, "attr": attributes}
        raise ValueError(f"R type {kind} is not supported by this small reader")


def _names_of(vector: dict) -> list[str]:
    node = vector["attr"]
    while node is not None:
        if node["tag"] == b"names":
            return [name.decode() for name in node["value"]["values"]]
        node = node["next"]
    raise ValueError("R object has no names")


def extract_novels(janeaustenr_dir: Path) -> dict[str, str]:
    """The six novels from an installed janeaustenr (e.g. Debian's r-cran-janeaustenr).

    data/Rdata.rdx (gzip + serialization) maps each object to (offset, length) in
    data/Rdata.rdb, where it is a 4-byte big-endian length + a zlib-compressed
    serialization; each novel is a character vector with one line of the book per entry.
    """
    data_dir = janeaustenr_dir / "data"
    index = _RUnserializer(gzip.decompress((data_dir / "Rdata.rdx").read_bytes())).read()
    variables = index["values"][_names_of(index).index("variables")]
    database = (data_dir / "Rdata.rdb").read_bytes()
    novels = {}
    for name, where in zip(_names_of(variables), variables["values"], strict=True):
        offset, length = where["values"]
        blob = zlib.decompress(database[offset + 4 : offset + length])
        lines = _RUnserializer(blob).read()["values"]
        novels[name] = "\n".join(line.decode("utf-8") if line else "" for line in lines) + "\n"
    missing = set(NOVELS) - set(novels)
    if missing:
        raise ValueError(f"janeaustenr data lacks {sorted(missing)}")
    return {name: novels[name] for name in NOVELS}


def load_novels(extract_from: Path | None) -> dict[str, str]:
    """The committed texts, or (with --extract) freshly extracted ones, which are saved."""
    if extract_from is not None:
        novels = extract_novels(extract_from)
        TEXT_DIR.mkdir(exist_ok=True)
        for name, text in novels.items():
            (TEXT_DIR / f"{name}.txt").write_text(text, encoding="utf-8")
        return novels
    paths = [TEXT_DIR / f"{name}.txt" for name in NOVELS]
    if not all(path.exists() for path in paths):
        raise SystemExit(
            f"The Austen texts are missing from {TEXT_DIR}. Re-extract them with\n"
            "  apt-get download r-cran-janeaustenr && dpkg -x r-cran-janeaustenr_*.deb ja\n"
            "  python build_demo_model.py --extract ja/usr/lib/R/site-library/janeaustenr"
        )
    return {path.stem: path.read_text(encoding="utf-8") for path in paths}


def prose(book: str) -> str:
    """Project Gutenberg line-wrapped text -> one line per paragraph, blank line between,
    as a writer types it: no _italic_ markers, "--" as an em dash."""
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", book))
    return "\n\n".join(p.replace("_", "").replace("--", "\u2014") for p in paragraphs if p)


def gpt2_vocab() -> list[bytes]:
    """GPT-2's 50257 tokens as raw bytes, from encoder.json (undoing its byte->char table)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    to_byte = {chr(b): b for b in printable}
    to_byte |= {chr(256 + i): b for i, b in enumerate(b for b in range(256) if b not in printable)}
    encoder = json.loads((BPE_DIR / "encoder.json").read_text("utf-8"))
    vocab = [b""] * len(encoder)
    for symbol, token_id in encoder.items():
        vocab[token_id] = bytes(to_byte[ch] for ch in symbol)
    return vocab


@dataclass
class Corpus:
    train: list[np.ndarray]  # token ids per novel (GPT-2 ids), each ending with EOS
    val: list[np.ndarray]
    used_ids: np.ndarray  # sorted GPT-2 ids the model predicts


def build_corpus(novels: dict[str, str], tokenizer: Tokenizer, config: Config) -> Corpus:
    train, val = [], []
    for text in novels.values():
        ids = np.array(tokenizer.encode(prose(text)) + [EOS_ID], dtype=np.int64)
        cut = int(len(ids) * (1 - config.val_fraction))
        train.append(ids[:cut])
        val.append(ids[cut:])
    counts = Counter(np.concatenate(train).tolist())
    used = sorted(token for token, count in counts.items() if count >= config.min_count)
    return Corpus(train, val, np.array(used, dtype=np.int64))


# --- model -----------------------------------------------------------------------------


class FakeQuantize(torch.autograd.Function):
    """Forward: the weights exactly as ggml will see them after quantization.
    Backward: straight through, so training learns weights that survive rounding."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, ftype: str) -> torch.Tensor:
        return torch.from_numpy(round_trip(weight.detach().numpy(), ftype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class Block(nn.Module):
    """A GPT-2 block as gpt2.cc computes it: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        # nn.Linear keeps [out, in], which is the GGML file's row layout (blocks along "in").
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.attn_proj = nn.Linear(n_embd, n_embd)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.mlp_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor, matrix) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = F.linear(self.ln_1(x), matrix(self.c_attn.weight), self.c_attn.bias)
        q, k, v = (
            part.view(batch, length, self.n_head, width // self.n_head).transpose(1, 2)
            for part in qkv.split(width, dim=2)
        )
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        attended = attended.transpose(1, 2).reshape(batch, length, width)
        x = x + F.linear(attended, matrix(self.attn_proj.weight), self.attn_proj.bias)
        hidden = F.linear(self.ln_2(x), matrix(self.c_fc.weight), self.c_fc.bias)
        hidden = F.gelu(hidden, approximate="tanh")
        return x + F.linear(hidden, matrix(self.mlp_proj.weight), self.mlp_proj.bias)


class DemoGPT2(nn.Module):
    """GPT-2 over the used tokens plus one shared row for all unused ones (see top)."""

    def __init__(self, config: Config, n_used: int, n_unused: int) -> None:
        super().__init__()
        e = config.n_embd
        self.ftype = config.ftype
        self.fake_quantize = False
        self.used = nn.Parameter(torch.randn(n_used, e) * 0.02)
        self.unused = nn.Parameter(torch.randn(1, e) * 0.02)
        self.wpe = nn.Parameter(torch.randn(config.n_ctx, e) * 0.01)
        self.blocks = nn.ModuleList(Block(e, config.n_head) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(e)
        for block in self.blocks:  # GPT-2's scaled init of the residual projections
            for linear in (block.attn_proj, block.mlp_proj):
                nn.init.normal_(linear.weight, std=0.02 / math.sqrt(2 * config.n_layer))
        for linear in (m for m in self.modules() if isinstance(m, nn.Linear)):
            nn.init.zeros_(linear.bias)
        keep = torch.ones(e)
        keep[0] = 0.0
        self.register_buffer("keep", keep)  # zeroes dimension 0 where it is reserved
        self.log_unused = math.log(n_unused)

    def matrix(self, weight: torch.Tensor) -> torch.Tensor:
        return FakeQuantize.apply(weight, self.ftype) if self.fake_quantize else weight

    def token_table(self) -> torch.Tensor:
        """[n_used + 1, n_embd]: the wte rows of the used tokens, then the unused row."""
        marker = torch.zeros_like(self.unused)
        marker[0, 0] = -1.0
        table = torch.cat([self.used * self.keep, self.unused * self.keep + marker])
        return self.matrix(table)

    def final_norm(self) -> tuple[torch.Tensor, torch.Tensor]:
        """ln_f's gain and bias, with dimension 0 pinned to the constant UNUSED_SHIFT."""
        shift = torch.zeros_like(self.keep)
        shift[0] = UNUSED_SHIFT
        return self.ln_f.weight * self.keep, self.ln_f.bias * self.keep + shift

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [batch, length, n_used + 1]; the last column is the log of the summed
        probability mass of all unused tokens (their logits are identical)."""
        table = self.token_table()
        x = table[tokens] + self.wpe[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x, self.matrix)
        gain, bias = self.final_norm()
        logits = F.layer_norm(x, (x.shape[-1],), gain, bias, eps=1e-5) @ table.T
        return torch.cat([logits[..., :-1], logits[..., -1:] + self.log_unused], dim=-1)


# --- training --------------------------------------------------------------------------


class Batches:
    """Random windows of n_ctx + 1 tokens from the training text, in compact ids."""

    def __init__(self, books: list[torch.Tensor], config: Config, seed: int) -> None:
        self.books = [b for b in books if len(b) > config.n_ctx + 1]
        self.weights = torch.tensor([float(len(b)) for b in self.books])
        self.config = config
        self.generator = torch.Generator().manual_seed(seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.config.n_ctx
        picks = torch.multinomial(self.weights, self.config.batch, True, generator=self.generator)
        rows = []
        for book in picks.tolist():
            start = torch.randint(0, len(self.books[book]) - n - 1, (1,), generator=self.generator)
            rows.append(self.books[book][start : start + n + 1])
        window = torch.stack(rows)
        return window[:, :-1], window[:, 1:]


def learning_rate(step: int, config: Config) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model: DemoGPT2, train_books: list[torch.Tensor], config: Config, ignore: int) -> None:
    decayed = [p for p in model.parameters() if p.dim() == 2 and p is not model.wpe]
    others = [p for p in model.parameters() if not any(p is q for q in decayed)]
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": config.weight_decay}, {"params": others}],
        lr=config.lr,
        betas=(0.9, 0.95),
        weight_decay=0.0,
    )
    batches = Batches(train_books, config, config.seed)
    qat_start = int(config.steps * (1 - config.qat_fraction))
    started, recent = time.monotonic(), []
    for step in range(config.steps):
        model.fake_quantize = step >= qat_start
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        inputs, targets = batches.next()
        logits = model(inputs)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=ignore)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        recent.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == config.steps:
            elapsed = time.monotonic() - started
            print(
                f"step {step + 1:5d}/{config.steps}  loss {sum(recent) / len(recent):.3f}  "
                f"lr {learning_rate(step, config):.2e}  {'q ' if model.fake_quantize else ''}"
                f"{elapsed / 60:.1f} min",
                flush=True,
            )
            recent = []


@torch.no_grad()
def validation_loss(model: DemoGPT2, books: list[torch.Tensor], n_ctx: int, ignore: int) -> float:
    """Mean cross-entropy (nats per token, over all 50257 tokens) on the held-out text."""
    total, count = 0.0, 0
    for book in books:
        for start in range(0, len(book) - 1, n_ctx):
            window = book[start : start + n_ctx + 1]
            logits = model(window[None, :-1])[0]
            losses = F.cross_entropy(logits, window[1:], ignore_index=ignore, reduction="none")
            kept = window[1:] != ignore
            total += losses[kept].sum().item()
            count += int(kept.sum())
    return total / count


# --- export and samples ----------------------------------------------------------------


@torch.no_grad()
def hugging_face_weights(model: DemoGPT2, used_ids: np.ndarray) -> dict[str, np.ndarray]:
    """The model as full-vocabulary GPT-2 weights in Hugging Face names and layout."""
    model.fake_quantize, was = False, model.fake_quantize
    table = model.token_table().numpy()  # unrounded: the writer does the rounding
    model.fake_quantize = was
    wte = np.repeat(table[-1:], EOS_ID + 1, axis=0)
    wte[used_ids] = table[:-1]
    gain, bias = model.final_norm()
    weights = {
        "transformer.wte.weight": wte,
        "transformer.wpe.weight": model.wpe.numpy(),
        "transformer.ln_f.weight": gain.numpy(),
        "transformer.ln_f.bias": bias.numpy(),
    }
    parts = {
        "ln_1": "ln_1",
        "ln_2": "ln_2",
        "attn.c_attn": "c_attn",
        "attn.c_proj": "attn_proj",
        "mlp.c_fc": "c_fc",
        "mlp.c_proj": "mlp_proj",
    }
    for i, block in enumerate(model.blocks):
        for hf_part, attribute in parts.items():
            module = getattr(block, attribute)
            weight = module.weight.numpy()
            # Conv1D stores [in, out]; LayerNorm gains are 1-D and stay as they are.
            weights[f"transformer.h.{i}.{hf_part}.weight"] = (
                weight.T if weight.ndim == 2 else weight
            )
            weights[f"transformer.h.{i}.{hf_part}.bias"] = module.bias.numpy()
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in weights.items()}


@torch.no_grad()
def continue_text(
    model: DemoGPT2, prompt: list[int], length: int, temperature: float, generator: torch.Generator
) -> list[int]:
    """Compact ids: greedy when temperature is 0, else top-40 sampling."""
    tokens = list(prompt)
    for _ in range(length):
        logits = model(torch.tensor([tokens[-model.wpe.shape[0] :]]))[0, -1, :-1]
        if temperature == 0:
            tokens.append(int(logits.argmax()))
            continue
        top = torch.topk(logits / temperature, 40)
        choice = torch.multinomial(torch.softmax(top.values, -1), 1, generator=generator)
        tokens.append(int(top.indices[choice]))
    return tokens[len(prompt) :]


def print_samples(model: DemoGPT2, tokenizer: Tokenizer, used_ids: np.ndarray, seed: int) -> None:
    compact = {int(token): i for i, token in enumerate(used_ids)}
    unused = len(used_ids)
    generator = torch.Generator().manual_seed(seed)
    prompts = ("It is a truth universally", "She was", "Mr. Darcy", "The weather was")
    for prompt in prompts:
        ids = [compact.get(token, unused) for token in tokenizer.encode(prompt)]
        for temperature in (0.0, 0.8):
            new = continue_text(model, ids, 40, temperature, generator)
            text = tokenizer.decode(int(used_ids[i]) for i in new)
            print(f"[T={temperature}] {prompt}|{text!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--extract", type=Path, help="janeaustenr install dir to extract from")
    parser.add_argument("--steps", type=int, default=Config.steps)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    config = Config(steps=args.steps)
    torch.set_num_threads(args.threads)
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)

    vocab = gpt2_vocab()
    tokenizer = Tokenizer.from_vocab(vocab)
    corpus = build_corpus(load_novels(args.extract), tokenizer, config)
    n_used = len(corpus.used_ids)
    compact = np.full(len(vocab), n_used, dtype=np.int64)  # n_used: the shared unused row
    compact[corpus.used_ids] = np.arange(n_used)
    train_books = [torch.from_numpy(compact[ids]) for ids in corpus.train]
    val_books = [torch.from_numpy(compact[ids]) for ids in corpus.val]
    train_tokens = sum(len(b) for b in train_books)
    print(
        f"{config}\ntraining tokens {train_tokens:,}, validation tokens "
        f"{sum(len(b) for b in val_books):,}, predicted vocabulary {n_used:,} of {len(vocab):,}"
    )

    model = DemoGPT2(config, n_used, len(vocab) - n_used)
    train(model, train_books, config, ignore=n_used)
    model.eval()
    model.fake_quantize = False
    print(
        f"validation loss (float weights): {validation_loss(model, val_books, config.n_ctx, n_used):.4f}"
    )
    model.fake_quantize = True
    print(
        f"validation loss ({config.ftype}, as shipped): "
        f"{validation_loss(model, val_books, config.n_ctx, n_used):.4f}"
    )
    print_samples(model, tokenizer, corpus.used_ids, config.seed)

    write_gpt2(
        args.out,
        hugging_face_weights(model, corpus.used_ids),
        vocab=vocab,
        n_ctx=config.n_ctx,
        n_head=config.n_head,
        ftype=config.ftype,
    )
    facts = validate_model_file(args.out)
    print(
        f"wrote {args.out} ({facts.file_size / 1e6:.2f} MB, {facts.quantization}, "
        f"{facts.parameter_count:,} parameters)"
    )


if __name__ == "__main__":
    main()
