"""Sampling settings: what the writer tunes with the sliders, as the engine receives it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from typing import Any


class StopAt(str, Enum):
    SENTENCE = "sentence"  # end at . ! ? (and closing quotes) or a paragraph break
    PARAGRAPH = "paragraph"  # end at a blank line / newline
    LENGTH = "length"  # only the token limit ends a suggestion


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.8  # 0 means greedy
    top_k: int = 40  # 0 means off (the engine then passes the vocabulary size)
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    repetition_window: int = 64  # how many previous tokens the penalty looks at
    max_tokens: int = 24  # suggestion length in new tokens
    seed: int = -1  # -1: a fresh random seed for every suggestion
    alternatives: int = 3  # how many suggestions Alt+] can cycle through
    stop_at: StopAt = StopAt.SENTENCE

    LIMITS = {
        "temperature": (0.0, 2.0),
        "top_k": (0, 200),
        "top_p": (0.0, 1.0),
        "repetition_penalty": (1.0, 2.0),
        "repetition_window": (0, 1024),
        "max_tokens": (1, 256),
        "seed": (-1, 2**31 - 1),
        "alternatives": (1, 9),
    }

    def __post_init__(self) -> None:
        for name, (low, high) in self.LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"{name} must be between {low} and {high}, got {value}")
        if not isinstance(self.stop_at, StopAt):
            object.__setattr__(self, "stop_at", StopAt(self.stop_at))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    def with_changes(self, **changes: Any) -> SamplingSettings:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop_at"] = self.stop_at.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingSettings:
        """Build from stored data, ignoring unknown keys and falling back per bad value."""
        known = {f.name for f in fields(cls)}
        result = cls()
        for key, value in data.items():
            if key not in known:
                continue
            try:
                result = replace(result, **{key: type(getattr(result, key))(value)})
            except (TypeError, ValueError, OverflowError):  # JSON allows 1e999
                continue
        return result
