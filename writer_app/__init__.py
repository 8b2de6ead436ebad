"""writer-app: a desktop writing assistant with local GPT-2 ghost-text suggestions.

Layers (dependencies point downwards only):
    ui/        QtWidgets: main window, ghost-text editor, panels, dialogs
    services/  QtCore only: inference worker thread, suggestion controller, downloads
    engine/    no Qt: GGML files, tokenizer, ctransformers backend in its own process
    models/    no Qt: catalog, local model store, hub downloader
    documents/ no Qt: saves, encodings, crash recovery
    safe_files.py  below them all: atomic replace and OS file locks, used by every layer
app.py is the one composition root that wires them together.
"""

__version__ = "0.1.0"
