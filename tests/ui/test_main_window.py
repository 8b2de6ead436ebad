"""The window itself: menus and shortcuts, status bar, docks, word count, the look of
the text (font, zoom, theme, wrap, column) and that all of it persists."""

# ruff: noqa: F811  (pytest fixtures are imported by name and then requested by name)
from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFont, QKeySequence, QPalette, QTextCursor
from PySide6.QtWidgets import QApplication, QDockWidget, QLabel

from tests.support.scripted import ScriptedMessenger
from tests.ui.window_fixtures import make_window, window_harness  # noqa: F401
from writer_app.app import WriterApp
from writer_app.settings import SettingsSaveError, Theme
from writer_app.ui.status_bar import count_text, describe_count
from writer_app.ui.themes import is_dark

Key = QKeySequence.StandardKey


def test_menus_in_order_with_platform_standard_shortcuts(window_harness):
    w = window_harness.window
    titles = [a.text() for a in w.menuBar().actions()]
    assert titles == ["&File", "&Edit", "&Model", "&View", "&Help"]
    assert w.model_menu.title() == "&Model" and w.view_menu.title() == "&View"
    expected = {
        "new": Key.New, "open": Key.Open, "save": Key.Save, "save_as": Key.SaveAs,
        "undo": Key.Undo, "redo": Key.Redo, "cut": Key.Cut, "copy": Key.Copy,
        "paste": Key.Paste, "select_all": Key.SelectAll, "find": Key.Find,
        "replace": Key.Replace, "zoom_in": Key.ZoomIn, "zoom_out": Key.ZoomOut,
        "full_screen": Key.FullScreen,
    }  # fmt: skip
    for name, key in expected.items():
        shortcuts = w.menus.actions[name].shortcuts()
        for binding in QKeySequence.keyBindings(key):
            assert binding in shortcuts, (name, binding.toString())
    assert QKeySequence("Ctrl+Q") in w.menus.actions["quit"].shortcuts()
    assert QKeySequence("Ctrl+=") in w.menus.actions["zoom_in"].shortcuts()
    assert QKeySequence("Ctrl+0") in w.menus.actions["zoom_reset"].shortcuts()


def test_no_two_actions_share_a_shortcut(window_harness):
    seen: dict[str, str] = {}
    for name, action in window_harness.window.menus.actions.items():
        for shortcut in action.shortcuts():
            key = shortcut.toString()
            assert key not in seen, f"{key} is both {seen[key]} and {name}"
            seen[key] = name


def test_edit_actions_follow_the_editor(window_harness):
    h = window_harness
    undo, copy = h.window.menus.actions["undo"], h.window.menus.actions["copy"]
    assert not undo.isEnabled() and not copy.isEnabled()
    h.type("hello world")
    assert undo.isEnabled()
    h.editor.selectAll()
    assert copy.isEnabled()
    h.window.menus.actions["cut"].trigger()
    assert h.editor.toPlainText() == ""
    h.window.menus.actions["paste"].trigger()
    assert h.editor.toPlainText() == "hello world"
    undo.trigger()
    assert h.editor.toPlainText() == ""


def test_status_bar_shows_model_and_engine_state(window_harness):
    w = window_harness.window
    w.set_model_text("demo-austen (q4_0)")
    w.set_engine_state("thinking · 42 tok/s")
    assert w.status.model_label.text() == "demo-austen (q4_0)"
    assert "thinking · 42 tok/s" in w.status.engine_label.text()


def test_counting_words_and_characters():
    assert count_text("  \n ").words == 0
    count = count_text("Don't stop — well-known words, 42 of them.\nNext")
    assert count.words == 8  # "—" is not a word; "Don't" and "well-known" are one each
    assert count.characters == len("Don't stop — well-known words, 42 of them.Next")
    assert describe_count(count_text("one"), None) == "1 word · 3 characters"


def test_word_count_follows_typing_and_selection(window_harness, qtbot):
    h = window_harness
    label = h.window.status.count_label
    h.type("One two three four five.")
    qtbot.waitUntil(lambda: label.text().startswith("5 words"))
    cursor = h.editor.textCursor()
    cursor.setPosition(0)
    cursor.setPosition(7, QTextCursor.MoveMode.KeepAnchor)
    h.editor.setTextCursor(cursor)
    qtbot.waitUntil(lambda: label.text().startswith("2 of 5 words selected"))
    assert "7 characters" in label.text()


def test_add_dock_puts_a_toggle_in_view_and_its_state_persists(make_window):
    first = make_window(start=False)
    dock = QDockWidget("Sampling")
    dock.setWidget(QLabel("panel"))
    toggle = first.window.add_dock(dock)
    first.window.start()
    assert toggle in first.window.view_menu.actions() and dock.objectName()
    toggle.trigger()
    assert dock.isHidden()
    first.window.close()

    second = make_window(start=False)
    dock2 = QDockWidget("Sampling")
    dock2.setWidget(QLabel("panel"))
    second.window.add_dock(dock2)
    second.window.start()
    assert dock2.isHidden()  # restored from the saved window state


def test_window_size_is_remembered(make_window):
    first = make_window()
    first.window.resize(700, 500)  # smaller than the offscreen screen (800x600)
    first.window.close()
    second = make_window()
    assert second.window.size() == QSize(700, 500)


def test_zoom_changes_the_text_size_and_persists(make_window):
    h = make_window()
    base = h.editor.font().pointSizeF()
    h.window.menus.actions["zoom_in"].trigger()
    h.window.menus.actions["zoom_in"].trigger()
    assert h.editor.font().pointSizeF() > base
    zoomed = h.editor.font().pointSizeF()
    assert h.store.load().settings.editor.zoom == 125
    h.window.close()
    again = make_window()
    assert again.editor.font().pointSizeF() == zoomed
    again.window.menus.actions["zoom_out"].trigger()
    assert again.store.load().settings.editor.zoom == 110
    again.window.menus.actions["zoom_reset"].trigger()
    assert again.editor.font().pointSizeF() == base


def test_default_font_is_a_readable_serif(window_harness):
    font = window_harness.editor.font()
    assert 11 <= font.pointSizeF() <= 16
    assert "serif" in font.family().lower() or font.family() in (
        "Charter", "Iowan Old Style", "Georgia", "Palatino Linotype", "Cambria",
    )  # fmt: skip


def test_font_choice_persists(make_window):
    h = make_window()
    chosen = QFont("DejaVu Sans Mono")
    chosen.setPointSize(17)
    h.fonts.answers.extend([chosen, None])
    h.window.menus.actions["font"].trigger()
    assert h.editor.font().family() == "DejaVu Sans Mono"
    assert h.editor.font().pointSizeF() == 17
    h.window.menus.actions["font"].trigger()  # cancelled: nothing changes
    assert h.editor.font().pointSizeF() == 17
    h.window.close()
    again = make_window()
    assert again.editor.font().family() == "DejaVu Sans Mono"


def test_theme_choice_changes_the_palette_and_persists(make_window, qtbot):
    h = make_window()
    assert h.window.menus.themes[Theme.SYSTEM].isChecked()
    h.window.menus.themes[Theme.DARK].trigger()
    assert is_dark(QApplication.palette())
    qtbot.waitUntil(lambda: is_dark(h.editor.palette()))  # widgets hear of it by event
    assert h.store.load().settings.editor.theme == Theme.DARK
    h.window.close()
    again = make_window()
    assert again.window.menus.themes[Theme.DARK].isChecked()
    assert is_dark(QApplication.palette())
    again.window.menus.themes[Theme.LIGHT].trigger()
    assert not is_dark(QApplication.palette())
    again.window.menus.themes[Theme.SYSTEM].trigger()
    assert QApplication.palette().color(QPalette.ColorRole.Base) == QPalette().color(
        QPalette.ColorRole.Base
    )


def test_line_wrap_toggle_persists(make_window):
    h = make_window()
    wrap = h.window.menus.actions["line_wrap"]
    assert wrap.isChecked()
    wrap.trigger()
    assert h.editor.lineWrapMode() == h.editor.LineWrapMode.NoWrap
    h.window.close()
    again = make_window()
    assert not again.window.menus.actions["line_wrap"].isChecked()
    assert again.editor.lineWrapMode() == again.editor.LineWrapMode.NoWrap


def test_text_column_stays_readable_on_a_very_wide_window(window_harness, qtbot):
    h = window_harness
    h.window.resize(2000, 900)
    qtbot.waitUntil(lambda: h.editor.width() > 1800)
    margins = h.editor.viewportMargins()
    assert margins.left() == margins.right()
    assert 450 < h.editor.viewport().width() < 900
    h.window.resize(500, 600)
    qtbot.waitUntil(lambda: h.editor.viewportMargins().left() < margins.left())
    assert h.editor.viewportMargins().left() >= 24  # never touching the edge


def test_full_screen_toggle(window_harness, qtbot):
    w = window_harness.window
    w.menus.full_screen.trigger()
    qtbot.waitUntil(w.isFullScreen)
    w.menus.full_screen.trigger()
    qtbot.waitUntil(lambda: not w.isFullScreen())


def test_focus_mode_hides_everything_but_the_text_and_esc_leaves(make_window, qtbot):
    h = make_window(start=False)
    dock = QDockWidget("Sampling")
    dock.setWidget(QLabel("panel"))
    h.window.add_dock(dock)
    h.window.start()
    w = h.window
    w.menus.focus_mode.trigger()
    assert w.in_focus_mode() and w.isFullScreen()
    assert w.menuBar().isHidden() and w.status.isHidden() and dock.isHidden()
    assert w.menus.actions["save"] in w.actions()  # shortcuts still work without menus
    h.editor.setFocus()
    qtbot.keyClick(h.editor, Qt.Key.Key_Escape)
    assert not w.in_focus_mode() and not w.isFullScreen()
    assert not w.menuBar().isHidden() and not w.status.isHidden() and not dock.isHidden()


def test_focus_mode_is_not_remembered_as_hidden_panels(make_window):
    h = make_window(start=False)
    dock = QDockWidget("Sampling")
    dock.setWidget(QLabel("panel"))
    h.window.add_dock(dock)
    h.window.start()
    h.window.set_focus_mode(True)
    h.window.close()
    again = make_window(start=False)
    dock2 = QDockWidget("Sampling")
    dock2.setWidget(QLabel("panel"))
    again.window.add_dock(dock2)
    again.window.start()
    assert not dock2.isHidden() and not again.window.menuBar().isHidden()


def test_a_corrupt_settings_file_is_survived_with_a_notice(app_home, qtbot):
    app_home.config_dir.mkdir(parents=True)
    app_home.settings_file.write_bytes(b"{ this is not json")
    messenger = ScriptedMessenger()
    writer = WriterApp.build(paths=app_home, messenger=messenger)  # as the app starts
    try:
        writer.window.start()
        (warning,) = messenger.texts("warning")
        assert "damaged" in warning and "default settings" in warning
        writer.window.look.zoom_in()  # and the window saves good settings again
        assert '"zoom": 110' in app_home.settings_file.read_text(encoding="utf-8")
    finally:
        writer.window.close()
        writer.shutdown()


def test_about_goes_through_the_messenger(window_harness):
    window_harness.window.menus.actions["about"].trigger()
    assert "writer-app" in window_harness.messenger.texts("info")[0]


def test_the_focus_mode_shortcut_enters_and_leaves(window_harness, qtbot):
    h = window_harness
    h.window.activateWindow()
    h.editor.setFocus()
    qtbot.keyClick(h.editor, Qt.Key.Key_F11, Qt.KeyboardModifier.ShiftModifier)
    assert h.window.in_focus_mode()
    qtbot.keyClick(h.editor, Qt.Key.Key_F11, Qt.KeyboardModifier.ShiftModifier)
    assert not h.window.in_focus_mode() and not h.window.menuBar().isHidden()


def test_a_settings_file_that_cannot_be_written_is_reported_once(make_window, monkeypatch):
    h = make_window()

    def disk_full(settings):
        raise SettingsSaveError("The disk is full; the settings file was NOT saved.")

    monkeypatch.setattr(h.store, "save", disk_full)
    h.window.look.zoom_in()
    h.window.look.zoom_in()
    assert h.messenger.texts("warning") == ["The disk is full; the settings file was NOT saved."]
    assert h.editor.font().pointSizeF() > 13  # the choice still applies for this session
