"""Test-wide fixtures: headless Qt, and every app folder redirected into tmp_path."""

from __future__ import annotations

import os

# Must happen before anything imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Never let huggingface_hub or anything else phone home from a test.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_OFFLINE"] = os.environ.get("HF_HUB_OFFLINE", "0")

import pytest  # noqa: E402

from writer_app.paths import HOME_ENV, AppPaths  # noqa: E402

# Tests that only run when asked (they take minutes or need the package index); every other
# skip in CI is a missing tool or feature, and fails the run.
OPT_IN_MARKERS = frozenset({"freeze", "install"})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (
        os.environ.get("CI") == "true"
        and report.skipped
        and not hasattr(report, "wasxfail")
        and not OPT_IN_MARKERS & {marker.name for marker in item.iter_markers()}
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"


@pytest.fixture(autouse=True)
def _unfreeze_gc():
    """The app freezes its long-lived objects out of garbage collection; one test's
    must not outlive it in the test process."""
    yield
    import gc

    gc.unfreeze()


@pytest.fixture(autouse=True)
def app_home(tmp_path, monkeypatch) -> AppPaths:
    """Each test gets its own config, data, cache and state folders."""
    home = tmp_path / "writer-app-home"
    monkeypatch.setenv(HOME_ENV, str(home))
    return AppPaths.default()


# ---- generated GGML models shared by integration tests ---------------------------------
# Phrase models are tiny GPT-2s over the real vocabulary whose greedy continuation of a
# phrase prefix is the rest of the phrase, so tests can assert real text end to end.

CAT_PHRASE = "The cat sat on the mat. Then it slept all day!"
SNOW_PHRASE = "Snow fell softly\nover quiet hills"
OWL_PHRASE = "An owl hooted twice before dawn."


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def cat_model(model_dir):
    from tests.support.models import phrase_model

    return phrase_model(model_dir / "cat-q8_0.bin", [CAT_PHRASE, SNOW_PHRASE], ftype="q8_0")


@pytest.fixture(scope="session")
def owl_model(model_dir):
    """A phrase model of another shape (wider, 3 layers, q4_0) for model switching."""
    from tests.support.models import phrase_model

    return phrase_model(
        model_dir / "owl-q4_0.bin", [OWL_PHRASE], ftype="q4_0", n_embd=96, n_layer=3, n_head=4
    )


@pytest.fixture(scope="session")
def slow_model(model_dir):
    """Random weights, big enough that a long generation takes seconds (for cancel tests)."""
    from tests.support.models import random_gpt2

    return random_gpt2(
        model_dir / "slow-q4_0.bin", n_layer=6, n_embd=512, n_head=8, n_ctx=1024, ftype="q4_0",
        seed=5,
    )
