"""A GPT-2 GGUF as other tools write it (ordinary token types, no mark of this app), made
from a GGML file with llama.cpp's own writer: the kind of file a writer imports."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from writer_app.engine.ggml import read_layout
from writer_app.engine.gguf_check import gguf_name, token_string


def foreign_gguf(ggml_source: Path, target: Path) -> Path:
    layout = read_layout(ggml_source)
    facts = layout.facts
    writer = gguf.GGUFWriter(target, "gpt2")
    writer.add_context_length(facts.n_ctx)
    writer.add_embedding_length(facts.n_embd)
    writer.add_feed_forward_length(4 * facts.n_embd)
    writer.add_block_count(facts.n_layer)
    writer.add_head_count(facts.n_head)
    writer.add_layer_norm_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    tokens = [token_string(t) for t in layout.vocab]
    types = [1] * len(tokens)
    if facts.eos_token_id is not None:
        tokens[facts.eos_token_id] = "<|endoftext|>"
        types[facts.eos_token_id] = 3
        writer.add_eos_token_id(facts.eos_token_id)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(["Ġ t"])
    data = np.memmap(ggml_source, dtype=np.uint8, mode="r")
    for entry in reversed(list(layout.tensors.values())):  # another order than ours
        writer.add_tensor(
            gguf_name(entry.name),
            np.array(data[entry.offset : entry.offset + entry.nbytes]),
            raw_shape=_byte_shape(entry.ne, entry.nbytes),
            raw_dtype=gguf.GGMLQuantizationType(entry.weight_type.ggml_type),
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def _byte_shape(ne: tuple[int, ...], nbytes: int) -> tuple[int, ...]:
    """The writer takes raw data's shape in bytes (numpy order), rows of whole blocks."""
    rows = ne[1] if len(ne) > 1 else 1
    return (rows, nbytes // rows) if len(ne) > 1 else (nbytes,)
