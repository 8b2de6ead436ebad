"""Model ▸ Engine: which local engine runs the model, with how many threads, on a GPU or not.

    Model ▸ Engine ▸ (•) ctransformers      models.engine
                     ( ) llama.cpp
                     ---
                     Remote server…         (ui/remote_engine.py, added by app.py)
                     ---
                     Threads ▸ (•) Auto (N) models.threads: "auto" or a number
                               ( ) 1 … (free cores)
                     [ ] Use the GPU        models.gpu_layers: 0 or GPU_ALL_LAYERS
                                            (llama.cpp only)

The menu only changes settings (through the keeper); app.py's subscription reloads the
model when the engine, the threads or the GPU choice change, so a change made anywhere (settings file,
this menu) takes the same path. The items follow the settings, whoever changed them.
"""

from __future__ import annotations

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu, QWidget

from writer_app.engine.backends import ENGINES, GPU_ALL_LAYERS
from writer_app.engine.cores import AUTO, Threads, free_cores
from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.settings import Settings

GPU_TIP = ("llama.cpp computes the model on a GPU when its build has one (xllamacpp's CUDA, "
           "Metal or Vulkan wheels); without one it runs on the CPU and the status bar "
           "says so. ctransformers has no GPU path for GPT-2.")
ENGINE_TIPS = {
    "ctransformers": "The default engine.",
    "llama.cpp": "Reads long prompts faster. The model is converted once for it (a copy "
                 "is kept beside the model file); if it can't run a model, ctransformers does.",
}


class EngineMenu:
    """The Engine submenu's local part; `menu` is where app.py adds the remote server."""

    def __init__(self, keeper: SettingsKeeper, parent: QWidget, *, cores: int | None = None):
        self.keeper = keeper
        self.menu = QMenu("&Engine", parent)
        self.menu.setObjectName("engineMenu")
        self.engine_group = QActionGroup(self.menu)
        # ExclusiveOptional: with a remote server in use, no local engine is checked.
        self.engine_group.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
        self.engine_actions: dict[str, QAction] = {}
        for name in ENGINES:
            action = QAction(name, self.engine_group, checkable=True)
            action.setToolTip(ENGINE_TIPS.get(name, ""))
            action.setStatusTip(ENGINE_TIPS.get(name, ""))
            action.triggered.connect(lambda _=False, n=name: self.choose_engine(n))
            self.menu.addAction(action)
            self.engine_actions[name] = action
        self.menu.addSeparator()
        self.threads_separator = self.menu.addSeparator()
        self.threads_menu = self.menu.addMenu("&Threads")
        self.threads_menu.setToolTip(
            "How many cores the engine computes on. Auto leaves one core to the window.")
        self.threads_group = QActionGroup(self.threads_menu)
        free = free_cores(for_window=True, cores=cores)
        self.thread_actions: dict[Threads, QAction] = {}
        for choice in (AUTO, *range(1, free + 1)):
            label = f"&Auto ({free})" if choice == AUTO else f"&{choice}"
            action = QAction(label, self.threads_group, checkable=True)
            action.triggered.connect(lambda _=False, c=choice: self.choose_threads(c))
            self.threads_menu.addAction(action)
            self.thread_actions[choice] = action
        self.gpu_action = QAction("Use the &GPU", self.menu, checkable=True)
        self.gpu_action.setObjectName("useGpuAction")
        self.gpu_action.setToolTip(GPU_TIP)
        self.gpu_action.setStatusTip(GPU_TIP)
        self.gpu_action.triggered.connect(self.choose_gpu)
        self.menu.addAction(self.gpu_action)
        self.local_in_use = True  # False while a remote server makes the suggestions
        keeper.subscribe(self.show)

    def place_before_threads(self, *actions: QAction) -> None:
        """Move `actions` (the remote server's) between the engines and Threads."""
        for action in actions:
            self.menu.removeAction(action)
            self.menu.insertAction(self.threads_separator, action)

    def choose_engine(self, name: str) -> None:
        self.keeper.update(lambda s: s.with_models(engine=name))

    def choose_threads(self, threads: Threads) -> None:
        self.keeper.update(lambda s: s.with_models(threads=threads))

    def choose_gpu(self, on: bool) -> None:
        self.keeper.update(lambda s: s.with_models(gpu_layers=GPU_ALL_LAYERS if on else 0))

    def set_local_in_use(self, in_use: bool) -> None:
        self.local_in_use = in_use
        self.show(self.keeper.current)

    def show(self, settings: Settings) -> None:
        for name, action in self.engine_actions.items():
            action.setChecked(self.local_in_use and name == settings.models.engine)
        threads = settings.models.threads
        # A number above this machine's free cores (a settings file from a bigger one)
        # runs as the most it can: show that.
        shown = threads if threads in self.thread_actions else max(
            (c for c in self.thread_actions if c != AUTO), default=AUTO)
        for choice, action in self.thread_actions.items():
            action.setChecked(choice == shown)
        self.gpu_action.setChecked(settings.models.gpu_layers > 0)
        # Kept while another engine runs (the choice returns with llama.cpp), not offered.
        self.gpu_action.setEnabled(self.local_in_use and settings.models.engine == "llama.cpp")
