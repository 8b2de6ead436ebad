"""A fine-tuned Hugging Face GPT-2 checkpoint folder, read lazily and checked up front.

`open_checkpoint` reads config.json and the safetensors headers (one file, or shards
listed in model.safetensors.index.json) and checks every tensor's name and shape against
the config before anything is converted. The result is a Mapping from the canonical names
the GGML writer expects ("transformer.h.0.attn.c_attn.weight", "lm_head.weight") to
float32 arrays in Hugging Face's layout (Conv1D matrices [in, out]), each read from its
memory-mapped file only when asked for, so converting holds one tensor at a time.

pytorch_model.bin is refused: unpickling it can run arbitrary code, and a refusal that
says how to re-save the model is safer than any unpickler we could write.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from writer_app.engine.ggml_writer import hf_names
from writer_app.models.safetensors_file import InvalidCheckpoint, SafetensorsFile, read_json

CONFIG = "config.json"
SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# Buffers GPT2Attention registers (the causal mask); they carry no learned weights.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
# ggml's GPT-2 hardcodes these; a config asking for anything else would compute wrongly.
SUPPORTED_EPSILON = 1e-5
SUPPORTED_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")
SAVE_AS_SAFETENSORS = (
    "{name} is a pickle, which can run code when loaded, so writer-app does not read it; "
    "re-save the model as safetensors with model.save_pretrained(DIR, "
    "safe_serialization=True) and import that folder."
)


@dataclass(frozen=True)
class GPT2Config:
    n_embd: int
    n_layer: int
    n_head: int
    n_positions: int
    vocab_size: int
    layer_norm_epsilon: float
    tied_head: bool


def checkpoint_folder(path: Path) -> Path | None:
    """The checkpoint folder that `path` names (the folder or a file in it), else None."""
    path = Path(path).expanduser()
    if path.is_dir():
        return path
    names = (CONFIG, SINGLE, INDEX, *PICKLED)
    if path.name in names or path.suffix == ".safetensors":
        return path.parent
    return None


def read_config(folder: Path) -> GPT2Config:
    raw = read_json(folder / CONFIG)
    architectures = raw.get("architectures") or []
    if raw.get("model_type") != "gpt2" and "GPT2LMHeadModel" not in architectures:
        kind = raw.get("model_type") or ", ".join(map(str, architectures)) or "unknown"
        raise InvalidCheckpoint(
            f"{folder.name} holds a {kind} model; only GPT-2 models (model_type gpt2) can be "
            "imported."
        )
    fields = {key: raw.get(key) for key in
              ("n_embd", "n_layer", "n_head", "n_positions", "vocab_size")}
    for key, value in fields.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidCheckpoint(f"config.json in {folder.name} has no valid {key}.")
    n_embd, n_head = fields["n_embd"], fields["n_head"]
    if n_embd % n_head:
        raise InvalidCheckpoint(f"config.json says n_embd {n_embd}, not divisible by n_head {n_head}.")
    epsilon = raw.get("layer_norm_epsilon", SUPPORTED_EPSILON)
    if not isinstance(epsilon, (int, float)) or not math.isclose(epsilon, SUPPORTED_EPSILON):
        raise InvalidCheckpoint(
            f"config.json asks for layer_norm_epsilon {epsilon}; the engine supports only 1e-05."
        )
    activation = raw.get("activation_function", "gelu_new")
    if activation not in SUPPORTED_ACTIVATIONS:
        raise InvalidCheckpoint(
            f"config.json asks for the {activation} activation; the engine computes gelu_new only."
        )
    if raw.get("n_inner") not in (None, 4 * n_embd):
        raise InvalidCheckpoint(
            f"config.json sets n_inner to {raw['n_inner']}; the engine needs 4 × n_embd."
        )
    if raw.get("scale_attn_by_inverse_layer_idx") or raw.get("scale_attn_weights") is False:
        raise InvalidCheckpoint("config.json changes GPT-2's attention scaling, which the "
                                "engine cannot do.")
    return GPT2Config(layer_norm_epsilon=float(epsilon),
                      tied_head=bool(raw.get("tie_word_embeddings", True)), **fields)


def expected_shapes(config: GPT2Config) -> dict[str, tuple[int, ...]]:
    """Canonical name -> Hugging Face shape (Conv1D weights are [in, out])."""
    e, v = config.n_embd, config.vocab_size
    shapes: dict[str, tuple[int, ...]] = {
        "transformer.wte.weight": (v, e),
        "transformer.wpe.weight": (config.n_positions, e),
        "transformer.ln_f.weight": (e,),
        "transformer.ln_f.bias": (e,),
    }
    if not config.tied_head:
        shapes["lm_head.weight"] = (v, e)
    for i in range(config.n_layer):
        p = f"transformer.h.{i}."
        for norm in ("ln_1", "ln_2"):
            shapes[p + norm + ".weight"] = shapes[p + norm + ".bias"] = (e,)
        for part, inputs, outputs in (("attn.c_attn", e, 3 * e), ("attn.c_proj", e, e),
                                      ("mlp.c_fc", e, 4 * e), ("mlp.c_proj", 4 * e, e)):
            shapes[p + part + ".weight"] = (inputs, outputs)
            shapes[p + part + ".bias"] = (outputs,)
    return shapes


class Checkpoint(Mapping[str, np.ndarray]):
    """Canonical name -> float32 array, read on access from its memory-mapped file."""

    def __init__(self, folder: Path, config: GPT2Config,
                 sources: dict[str, tuple[SafetensorsFile, str]]) -> None:
        self.folder = folder
        self.config = config
        self._sources = sources  # canonical name -> (file, name inside the file)
        self._names = hf_names(config.n_layer, lm_head=not config.tied_head)

    def __getitem__(self, name: str) -> np.ndarray:
        file, stored = self._sources[name]
        return file.read(stored)

    def rows(self, name: str, rows: slice | np.ndarray) -> np.ndarray:
        """Some rows of a tensor (first axis), reading only those."""
        file, stored = self._sources[name]
        return file.read(stored, rows)

    def shape(self, name: str) -> tuple[int, ...]:
        file, stored = self._sources[name]
        return file.tensors[stored].shape

    def __contains__(self, name: object) -> bool:
        return name in self._sources  # Mapping's default would read the tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def nbytes(self, name: str) -> int:
        """float32 bytes of one tensor (what reading it costs in memory)."""
        file, stored = self._sources[name]
        return 4 * math.prod(file.tensors[stored].shape)

    @property
    def files(self) -> list[Path]:
        return sorted({file.path for file, _ in self._sources.values()})


def open_checkpoint(path: Path) -> Checkpoint:
    """Read and check a checkpoint folder's config and weight headers (InvalidCheckpoint)."""
    folder = checkpoint_folder(path)
    if folder is None or not folder.is_dir():
        raise InvalidCheckpoint(f"{path} is not a Hugging Face model folder.")
    if (folder / "adapter_config.json").is_file() and not (folder / CONFIG).is_file():
        raise InvalidCheckpoint(
            f"{folder.name} holds a LoRA adapter, not a whole model; merge it into its base "
            "model (model.merge_and_unload(), then save_pretrained) and import that folder."
        )
    config = read_config(folder)
    files = _weight_files(folder)
    return Checkpoint(folder, config, _match_tensors(folder, config, files))


def _weight_files(folder: Path) -> list[SafetensorsFile]:
    index = folder / INDEX
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise InvalidCheckpoint(f"{INDEX} in {folder.name} has no weight_map.")
        shards = sorted({str(shard) for shard in weight_map.values()})
        missing = [s for s in shards if Path(s).name != s or not (folder / s).is_file()]
        if missing:
            raise InvalidCheckpoint(f"{folder.name} lacks the weight shard {missing[0]} that "
                                    f"{INDEX} lists.")
        files = [SafetensorsFile(folder / shard) for shard in shards]
        by_shard = {file.path.name: file for file in files}
        for tensor, shard in weight_map.items():
            if tensor not in by_shard[shard].tensors:
                raise InvalidCheckpoint(f"{INDEX} places {tensor} in {shard}, which lacks it.")
        return files
    if (folder / SINGLE).is_file():
        return [SafetensorsFile(folder / SINGLE)]
    for pickled in PICKLED:
        if (folder / pickled).is_file():
            raise InvalidCheckpoint(SAVE_AS_SAFETENSORS.format(name=pickled))
    raise InvalidCheckpoint(f"{folder.name} has no {SINGLE} (or {INDEX} with its shards).")


def canonical_name(stored: str) -> str | None:
    """"h.0.attn.c_attn.weight" or "transformer.h.0..." -> "transformer.h.0..."; None
    for buffers that carry no weights."""
    if stored.endswith(IGNORED_SUFFIXES):
        return None
    if stored == "lm_head.weight":
        return stored
    return "transformer." + stored.removeprefix("transformer.")


def _match_tensors(folder: Path, config: GPT2Config, files: list[SafetensorsFile]
                   ) -> dict[str, tuple[SafetensorsFile, str]]:
    shapes = expected_shapes(config)
    sources: dict[str, tuple[SafetensorsFile, str]] = {}
    for file in files:
        for stored, info in file.tensors.items():
            name = canonical_name(stored)
            if name is None or (name == "lm_head.weight" and config.tied_head):
                continue  # a tied head is wte (as transformers ties it), a stored copy or not
            if name not in shapes:
                raise InvalidCheckpoint(
                    f"{file.path.name} holds {stored}, which a GPT-2 language model with "
                    f"{config.n_layer} layers does not have."
                )
            if name in sources:
                raise InvalidCheckpoint(f"{folder.name} stores {name} twice.")
            if info.shape != shapes[name]:
                raise InvalidCheckpoint(
                    f"{stored} has shape {list(info.shape)}, but config.json (n_embd "
                    f"{config.n_embd}, n_layer {config.n_layer}, n_positions "
                    f"{config.n_positions}, vocab_size {config.vocab_size}) needs "
                    f"{list(shapes[name])}."
                )
            sources[name] = (file, stored)
    missing = [name for name in shapes if name not in sources]
    if missing:
        raise InvalidCheckpoint(f"{folder.name} lacks the tensor {missing[0]}"
                                f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}.")
    return sources


