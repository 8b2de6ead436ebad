"""Speed benchmarks: the app (InferenceService, WriterApp) beside raw ctransformers.

Run `python benchmarks/run.py` from the repository root; see benchmarks/README.md.
"""
