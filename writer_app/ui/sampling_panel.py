"""The Sampling panel: how the model picks its words, as sliders, plus presets.

Every value is a slider and a spin box that follow each other. The panel never talks to
the controller: it writes settings.sampling through the SettingsKeeper (so the values
persist), and the controller, subscribed to the keeper, restarts a suggestion still
being generated. Slider drags are committed after a short pause
(COMMIT_DELAY_MS), so a drag is one settings change, not fifty.

Presets (presets.py) sit on top: choosing one copies its values in and remembers it for
the model in use; "Custom" shows when the values match no preset. Names and files are
asked for through seams (NameAsker, a FileChooser), so tests never meet a modal dialog.

install_sampling(...) builds this panel and the token-probability panel as docks of the
main window, from the collaborators the composition root passes in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import shiboken6
from PySide6.QtCore import QObject, QStandardPaths, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMenu,
    QPushButton,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from writer_app import presets
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.services.inference import InferenceService
from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.services.suggestion_controller import SuggestionController
from writer_app.settings import Settings
from writer_app.ui.choosers import FileChooser
from writer_app.ui.dialogs import Messenger
from writer_app.ui.main_window import MainWindow
from writer_app.ui.probability_panel import ProbabilityPanel

COMMIT_DELAY_MS = 250
SAMPLING_DOCK = "samplingDock"  # object names: how the window's saved state finds them
PROBABILITY_DOCK = "probabilityDock"
CUSTOM = "Custom"
PRESET_FILTER = "Sampling presets (*.json);;All files (*)"


# ---- seams -------------------------------------------------------------------------------


class NameAsker:
    """Interface: ask the writer for a short name (None: cancelled)."""

    def ask_name(self, parent: QWidget | None, title: str, label: str, default: str) -> str | None:
        raise NotImplementedError


class QtNameAsker(NameAsker):
    def ask_name(self, parent: QWidget | None, title: str, label: str, default: str) -> str | None:
        text, accepted = QInputDialog.getText(parent, title, label, text=default)
        return text if accepted else None


class QtPresetFileChooser(FileChooser):
    """The file dialogs for preset files (JSON), starting in the Documents folder."""

    def open_path(self, parent: QWidget | None, start_dir: str) -> str | None:
        path, _ = QFileDialog.getOpenFileName(parent, "Import preset", start_dir, PRESET_FILTER)
        return path or None

    def save_path(self, parent: QWidget | None, suggested: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(parent, "Export preset", suggested, PRESET_FILTER)
        return path or None


# ---- one value: slider + spin box ----------------------------------------------------------


@dataclass(frozen=True)
class ControlSpec:
    name: str  # the SamplingSettings field
    label: str
    tooltip: str
    decimals: int = 0  # 0: a whole number
    step: float = 1
    off_text: str = ""  # shown instead of the lowest value, which means "off"


CONTROLS = (
    ControlSpec(
        "temperature",
        "Temperature",
        "How adventurous the word choice is. Low values stick to the likeliest words; "
        "0 always takes the single likeliest word, so every suggestion is the same. "
        "High values surprise more, and wander off more.",
        decimals=2,
        step=0.05,
        off_text="0 (greedy)",
    ),
    ControlSpec(
        "top_k",
        "Top-k",
        "Only the k likeliest next words are ever considered. Smaller is safer; "
        "0 turns this limit off.",
        off_text="off",
    ),
    ControlSpec(
        "top_p",
        "Top-p",
        "Only the likeliest words that together make up this share of the chances are "
        "considered, so the long tail of odd words is left out. 1 turns this limit off.",
        decimals=2,
        step=0.01,
    ),
    ControlSpec(
        "repetition_penalty",
        "Repetition penalty",
        "Makes words that were used recently less likely, so suggestions repeat "
        "themselves less. 1 means no penalty.",
        decimals=2,
        step=0.01,
    ),
    ControlSpec(
        "repetition_window",
        "Penalty window",
        "How far back the repetition penalty looks, in tokens (a token is a word or a "
        "piece of one). 0 turns the penalty off.",
        step=8,
        off_text="off",
    ),
    ControlSpec(
        "max_tokens",
        "Suggestion length",
        "The longest a suggestion may get, in tokens (a word or a piece of one).",
    ),
    ControlSpec(
        "alternatives",
        "Alternatives",
        "How many different suggestions you can cycle through for the same spot.",
    ),
)


class NumberControl(QObject):
    """A slider and a spin box for one sampling value (the panel lays them out);
    `changed` when the writer moves either, not when the program sets a value."""

    changed = Signal()

    def __init__(self, spec: ControlSpec, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        low, high = SamplingSettings.LIMITS[spec.name]
        self._scale = 10**spec.decimals
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(round(low * self._scale), round(high * self._scale))
        self.slider.setSingleStep(round(spec.step * self._scale))
        self.slider.setPageStep(round(spec.step * self._scale * 4))
        if spec.decimals:
            self.spin: QSpinBox | QDoubleSpinBox = QDoubleSpinBox()
            self.spin.setDecimals(spec.decimals)
        else:
            self.spin = QSpinBox()
        self.spin.setRange(low, high)
        self.spin.setSingleStep(spec.step if spec.decimals else int(spec.step))
        self.spin.setSpecialValueText(spec.off_text)
        self.spin.setMinimumWidth(88)
        self.spin.setAlignment(Qt.AlignmentFlag.AlignRight)
        for widget in (self.slider, self.spin):
            widget.setToolTip(spec.tooltip)
        self.slider.setAccessibleName(spec.label)
        self.spin.setAccessibleName(spec.label)
        self.slider.valueChanged.connect(self._slider_moved)
        self.spin.valueChanged.connect(self._spin_changed)

    def value(self) -> float | int:
        value = self.spin.value()
        return round(value, self.spec.decimals) if self.spec.decimals else int(value)

    def set_value(self, value: float) -> None:
        for widget in (self.slider, self.spin):
            widget.blockSignals(True)
        self.spin.setValue(value)
        self.slider.setValue(round(value * self._scale))
        for widget in (self.slider, self.spin):
            widget.blockSignals(False)

    def _slider_moved(self, position: int) -> None:
        self.spin.blockSignals(True)
        self.spin.setValue(position / self._scale if self.spec.decimals else position)
        self.spin.blockSignals(False)
        self.changed.emit()

    def _spin_changed(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(value * self._scale))
        self.slider.blockSignals(False)
        self.changed.emit()


# ---- the panel -------------------------------------------------------------------------------


STOP_CHOICES = (
    (StopAt.SENTENCE, "Sentence"),
    (StopAt.PARAGRAPH, "Paragraph"),
    (StopAt.LENGTH, "Length only"),
)


class SamplingPanel(QWidget):
    def __init__(
        self,
        keeper: SettingsKeeper,
        messenger: Messenger,
        *,
        active_model: Callable[[], str | None],
        file_chooser: FileChooser | None = None,
        name_asker: NameAsker | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("samplingPanel")
        self.setMinimumWidth(300)
        self._keeper = keeper
        self._messenger = messenger
        self._active_model = active_model  # the model_key of the model in use, if any
        # Seams, replaceable later (tests script them).
        self.file_chooser = file_chooser or QtPresetFileChooser()
        self.name_asker = name_asker or QtNameAsker()
        self._commit_timer = QTimer(self)
        self._commit_timer.setSingleShot(True)
        self._commit_timer.setInterval(COMMIT_DELAY_MS)
        self._commit_timer.timeout.connect(self.commit)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        layout.addLayout(self._build_preset_row())
        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        grid.setColumnStretch(1, 1)
        self.controls: dict[str, NumberControl] = {}
        for row, spec in enumerate(CONTROLS):
            control = NumberControl(spec, self)
            label = QLabel(spec.label)
            label.setToolTip(spec.tooltip)
            label.setBuddy(control.spin)
            grid.addWidget(label, row, 0)
            grid.addWidget(control.slider, row, 1)
            grid.addWidget(control.spin, row, 2)
            control.changed.connect(self._edited)
            self.controls[spec.name] = control
        row = len(CONTROLS)
        self._build_seed_row(grid, row)
        self._build_stop_row(grid, row + 1)
        layout.addLayout(grid)
        layout.addStretch(1)
        keeper.subscribe(self._settings_changed)

    # ---- building ---------------------------------------------------------------------

    def _build_preset_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        label = QLabel("Preset")
        self.preset_box = QComboBox()
        self.preset_box.setToolTip(
            "Ready-made sets of values. Your choice is remembered for the model in use."
        )
        self.preset_box.setAccessibleName("Preset")
        self.preset_box.activated.connect(self._preset_chosen)
        label.setBuddy(self.preset_box)
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Keep the values below as a preset of your own.")
        self.save_button.clicked.connect(self.save_as_preset)
        menu = QMenu(self)
        self.delete_action = menu.addAction("Delete this preset", self.delete_preset)
        menu.addSeparator()
        menu.addAction("Import preset…", self.import_preset)
        menu.addAction("Export preset…", self.export_preset)
        menu.addSeparator()
        menu.addAction("Reset to defaults", self.reset_to_defaults)
        self.more_button = QToolButton()
        self.more_button.setText("⋯")
        self.more_button.setToolTip("More: delete, import, export, reset to defaults")
        self.more_button.setMenu(menu)
        self.more_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.more_button.setStyleSheet("QToolButton::menu-indicator { image: none; }")
        row.addWidget(label)
        row.addWidget(self.preset_box, 1)
        row.addWidget(self.save_button)
        row.addWidget(self.more_button)
        return row

    def _build_seed_row(self, grid: QGridLayout, row: int) -> None:
        tip = (
            "Chance decides between likely words. Normally every suggestion rolls new dice; "
            "a fixed seed rolls the same dice each time, so the same text gives the same "
            "suggestion."
        )
        self.fixed_seed = QCheckBox("Fixed seed")
        self.fixed_seed.setToolTip(tip)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, SamplingSettings.LIMITS["seed"][1])
        self.seed_spin.setToolTip(tip)
        self.seed_spin.setAccessibleName("Seed")
        self.seed_spin.setMinimumWidth(88)
        self.seed_spin.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.fixed_seed.toggled.connect(self.seed_spin.setEnabled)
        self.fixed_seed.toggled.connect(self._edited)
        self.seed_spin.valueChanged.connect(self._edited)
        grid.addWidget(self.fixed_seed, row, 0, 1, 2)
        grid.addWidget(self.seed_spin, row, 2)

    def _build_stop_row(self, grid: QGridLayout, row: int) -> None:
        tip = (
            "Where a suggestion ends: after one sentence, at the end of the paragraph, or "
            "only when it reaches the suggestion length."
        )
        label = QLabel("Stop at")
        label.setToolTip(tip)
        self.stop_box = QComboBox()
        self.stop_box.setToolTip(tip)
        self.stop_box.setAccessibleName("Stop at")
        for stop, text in STOP_CHOICES:
            self.stop_box.addItem(text, stop.value)
        label.setBuddy(self.stop_box)
        self.stop_box.currentIndexChanged.connect(self._edited)
        grid.addWidget(label, row, 0)
        grid.addWidget(self.stop_box, row, 1, 1, 2)

    # ---- values -----------------------------------------------------------------------

    def values(self) -> SamplingSettings:
        """What the controls show now (committed or not)."""
        numbers = {name: control.value() for name, control in self.controls.items()}
        seed = self.seed_spin.value() if self.fixed_seed.isChecked() else -1
        stop = StopAt(self.stop_box.currentData())
        return SamplingSettings(**numbers, seed=seed, stop_at=stop)

    def show_settings(self, settings: Settings) -> None:
        sampling = settings.sampling
        for name, control in self.controls.items():
            control.set_value(getattr(sampling, name))
        for widget in (self.fixed_seed, self.seed_spin, self.stop_box):
            widget.blockSignals(True)
        self.fixed_seed.setChecked(sampling.seed >= 0)
        self.seed_spin.setEnabled(sampling.seed >= 0)
        if sampling.seed >= 0:
            self.seed_spin.setValue(sampling.seed)
        self.stop_box.setCurrentIndex(self.stop_box.findData(sampling.stop_at.value))
        for widget in (self.fixed_seed, self.seed_spin, self.stop_box):
            widget.blockSignals(False)
        self._show_presets(settings, sampling)

    def _show_presets(self, settings: Settings, sampling: SamplingSettings) -> None:
        box = self.preset_box
        box.blockSignals(True)
        box.clear()
        current = presets.matching_preset(settings, sampling)
        if current is None:
            box.addItem(CUSTOM, None)
            box.setItemData(
                0, "Values of your own, not saved as a preset.", Qt.ItemDataRole.ToolTipRole
            )
        for name in presets.preset_names(settings):
            box.addItem(name, name)
        box.setCurrentIndex(box.findData(current) if current else 0)
        box.blockSignals(False)
        self.delete_action.setEnabled(current is not None and not presets.is_built_in(current))

    def current_preset(self) -> str | None:
        return self.preset_box.currentData()

    # ---- the writer's changes -----------------------------------------------------------

    def _edited(self) -> None:
        self._show_presets(self._keeper.current, self.values())
        self._commit_timer.start()

    def commit(self) -> None:
        """Save what the controls show as the current sampling (now, not after the pause)."""
        self._commit_timer.stop()
        sampling = self.values()
        model = self._active_model()

        def with_values(settings: Settings) -> Settings:
            # Values of the writer's own: the model no longer follows its preset.
            remembered = presets.preset_for_model(settings, model) if model else None
            if remembered and presets.find_preset(settings, remembered) != sampling:
                per_model = {k: v for k, v in settings.per_model_preset.items() if k != model}
                settings = replace(settings, per_model_preset=per_model)
            return replace(settings, sampling=sampling)

        self._keeper.update(with_values)

    def _settings_changed(self, settings: Settings) -> None:
        if self._commit_timer.isActive():
            return  # the writer is mid-change: the controls are newer than the settings
        self.show_settings(settings)

    def _preset_chosen(self, index: int) -> None:
        name = self.preset_box.itemData(index)
        if name:
            self.choose_preset(name)

    def choose_preset(self, name: str) -> None:
        self._commit_timer.stop()
        model = self._active_model()
        self._update(lambda s: presets.apply_preset(s, name, model))

    def save_as_preset(self) -> None:
        default = self.current_preset() or "My preset"
        if presets.is_built_in(default):
            default = f"My {default.lower()}"
        name = self.name_asker.ask_name(self, "Save preset", "Name for these values:", default)
        if name is None:
            return
        sampling = self.values()
        model = self._active_model()
        self._commit_timer.stop()
        self._update(
            lambda s: presets.apply_preset(
                presets.save_preset(s, name, sampling), name.strip(), model
            )
        )

    def delete_preset(self) -> None:
        name = self.current_preset()
        if name:
            self._update(lambda s: presets.delete_preset(s, name))

    def reset_to_defaults(self) -> None:
        self._commit_timer.stop()
        model = self._active_model()
        self._update(lambda s: presets.reset_to_defaults(s, model))

    def export_preset(self) -> None:
        name = self.current_preset() or self.name_asker.ask_name(
            self, "Export preset", "Name for these values:", "My preset"
        )
        if not name:
            return
        documents = QStandardPaths.writableLocation(
            QStandardPaths.StandardLocation.DocumentsLocation
        )
        path = self.file_chooser.save_path(self, str(Path(documents) / f"{name}.json"))
        if path is None:
            return
        try:
            presets.export_preset(path, name, self.values())
        except presets.PresetFileError as error:
            self._messenger.warning("Preset not exported", str(error))

    def import_preset(self) -> None:
        documents = QStandardPaths.writableLocation(
            QStandardPaths.StandardLocation.DocumentsLocation
        )
        path = self.file_chooser.open_path(self, documents)
        if path is None:
            return
        try:
            name, sampling = presets.import_preset(path)
        except presets.PresetFileError as error:
            self._messenger.warning("Preset not imported", str(error))
            return
        settings = self._keeper.current
        model = self._active_model()
        self._commit_timer.stop()
        if presets.find_preset(settings, name) == sampling:  # known already: just use it
            self._update(lambda s: presets.apply_preset(s, name, model))
            return
        name = presets.unique_name(name, set(presets.preset_names(settings)))
        self._update(
            lambda s: presets.apply_preset(presets.save_preset(s, name, sampling), name, model)
        )

    def _update(self, change: Callable[[Settings], Settings]) -> None:
        try:
            self._keeper.update(change)
        except presets.PresetError as error:
            self._messenger.warning("Presets", str(error))
        self.show_settings(self._keeper.current)


# ---- wiring into the app -----------------------------------------------------------------------


@dataclass
class SamplingDocks:
    sampling_dock: QDockWidget
    sampling: SamplingPanel
    probability_dock: QDockWidget
    probabilities: ProbabilityPanel


def install_sampling(
    window: MainWindow,
    *,
    keeper: SettingsKeeper,
    service: InferenceService,
    controller: SuggestionController,
    messenger: Messenger,
    file_chooser: FileChooser | None = None,
    name_asker: NameAsker | None = None,
) -> SamplingDocks:
    """Build the Sampling and Token probabilities docks and add them to `window`."""

    def active_model() -> str | None:
        return presets.model_key(service.facts.path) if service.facts else None

    sampling = SamplingPanel(
        keeper,
        messenger,
        active_model=active_model,
        file_chooser=file_chooser,
        name_asker=name_asker,
    )
    probabilities = ProbabilityPanel(controller, service, keeper)
    shown = keeper.current.window
    sampling_dock = _dock("Sampling", SAMPLING_DOCK, sampling, window)
    probability_dock = _dock("Token probabilities", PROBABILITY_DOCK, probabilities, window)
    window.add_dock(sampling_dock, visible=shown.show_sampling_panel)
    window.add_dock(probability_dock, visible=shown.show_probability_panel)
    _remember_visibility(window, sampling_dock, "show_sampling_panel")
    _remember_visibility(window, probability_dock, "show_probability_panel")
    probabilities.set_active(probability_dock.isVisibleTo(window))
    probability_dock.visibilityChanged.connect(probabilities.set_active)
    service.step_probabilities = probability_dock.isVisibleTo(window)
    probability_dock.visibilityChanged.connect(
        lambda visible: setattr(service, "step_probabilities", visible)
    )

    def model_loaded(facts: object) -> None:
        # A model brings back the preset last chosen with it.
        name = presets.preset_for_model(keeper.current, presets.model_key(facts.path))
        if name is not None:
            keeper.update(lambda s: presets.apply_preset(s, name))

    service.modelLoaded.connect(model_loaded)
    return SamplingDocks(sampling_dock, sampling, probability_dock, probabilities)


def _dock(title: str, name: str, panel: QWidget, parent: QWidget) -> QDockWidget:
    dock = QDockWidget(title, parent)
    dock.setObjectName(name)  # saveState/restoreState find docks by name
    dock.setWidget(panel)
    dock.setFeatures(
        QDockWidget.DockWidgetFeature.DockWidgetClosable
        | QDockWidget.DockWidgetFeature.DockWidgetMovable
        | QDockWidget.DockWidgetFeature.DockWidgetFloatable
    )
    return dock


def _remember_visibility(window: MainWindow, dock: QDockWidget, setting: str) -> None:
    closed = []
    window.closed.connect(lambda: closed.append(True))

    def toggled(visible: bool) -> None:
        # Focus mode, closing and tearing down hide every panel; none of that is the
        # writer's choice to remember.
        if closed or not shiboken6.isValid(window):
            return
        if window.in_focus_mode() or not window.isVisible():
            return
        window.keeper.update(lambda s: replace(s, window=replace(s.window, **{setting: visible})))

    dock.toggleViewAction().toggled.connect(toggled)
