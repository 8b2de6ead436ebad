"""Fixtures for tests against llama.cpp's real server (import them into a test module).

cat_gguf     the phrase model (greedy continues "The cat sat" / "Snow fell") as GGUF
random_gguf  random GPT-2 weights as GGUF: varied text, and slow enough to kill mid-way
cat_server / random_server / keyed_server   one server per test module, on 127.0.0.1
"""

from __future__ import annotations

import pytest

from tests.support.gguf_models import phrase_gguf, random_gguf
from tests.support.llama_server import LlamaServer

CAT_PHRASE = "The cat sat on the mat. Then it slept all day!"
SNOW_PHRASE = "Snow fell softly\nover quiet hills"
API_KEY = "sk-test-0123456789abcdef"


@pytest.fixture(scope="session")
def cat_gguf(tmp_path_factory):
    return phrase_gguf(tmp_path_factory.mktemp("gguf") / "cat.gguf", [CAT_PHRASE, SNOW_PHRASE])


@pytest.fixture(scope="session")
def random_gguf_model(tmp_path_factory):
    return random_gguf(tmp_path_factory.mktemp("gguf") / "random.gguf", n_layer=4, n_embd=256,
                       n_head=4, n_ctx=1024, seed=3)


@pytest.fixture(scope="module")
def cat_server(cat_gguf):
    with LlamaServer(cat_gguf) as server:
        yield server


@pytest.fixture(scope="module")
def keyed_server(cat_gguf):
    with LlamaServer(cat_gguf, api_key=API_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def random_server(random_gguf_model):
    with LlamaServer(random_gguf_model) as server:
        yield server
