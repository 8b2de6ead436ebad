"""Light and dark themes, following the system unless the writer picks one.

Theme.SYSTEM leaves colours to the platform: the application palette is reset to its
default and Qt (6.5+) keeps it in step with the system's colour scheme by itself.
An explicit LIGHT or DARK sets the colour scheme hint (Qt 6.8+, so native styles follow
where they can) and also a complete palette of our own, because many platforms and
styles ignore the hint; the palette is what the text area actually paints with.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from writer_app.settings import Theme

Role = QPalette.ColorRole
Group = QPalette.ColorGroup

# Calm, low-glare colours for long prose; text contrast is above WCAG AA in both.
_LIGHT = {
    Role.Window: "#efefec",
    Role.WindowText: "#1f1f1f",
    Role.Base: "#fbfbf8",
    Role.AlternateBase: "#f1f1ed",
    Role.Text: "#1f1f1f",
    Role.PlaceholderText: "#8a8a86",
    Role.Button: "#e6e6e2",
    Role.ButtonText: "#1f1f1f",
    Role.BrightText: "#ffffff",
    Role.Highlight: "#3d6fb6",
    Role.HighlightedText: "#ffffff",
    Role.ToolTipBase: "#fbfbf8",
    Role.ToolTipText: "#1f1f1f",
    Role.Link: "#2a5aa6",
    Role.Light: "#ffffff",
    Role.Midlight: "#f4f4f1",
    Role.Mid: "#c4c4bf",
    Role.Dark: "#9f9f9a",
    Role.Shadow: "#5a5a56",
}
_DARK = {
    Role.Window: "#26272a",
    Role.WindowText: "#dcdcd8",
    Role.Base: "#1c1d20",
    Role.AlternateBase: "#24252a",
    Role.Text: "#dcdcd8",
    Role.PlaceholderText: "#7d7e82",
    Role.Button: "#303236",
    Role.ButtonText: "#dcdcd8",
    Role.BrightText: "#ffffff",
    Role.Highlight: "#4a78c2",
    Role.HighlightedText: "#ffffff",
    Role.ToolTipBase: "#303236",
    Role.ToolTipText: "#dcdcd8",
    Role.Link: "#7aa7ec",
    Role.Light: "#45474c",
    Role.Midlight: "#393b40",
    Role.Mid: "#2c2d31",
    Role.Dark: "#161719",
    Role.Shadow: "#0c0c0d",
}
_DISABLED_TEXT = {Theme.LIGHT: "#9a9a96", Theme.DARK: "#6c6d71"}


def palette_for(theme: Theme) -> QPalette:
    """The palette for an explicit theme (LIGHT or DARK)."""
    if theme == Theme.SYSTEM:
        raise ValueError("the system theme has no fixed palette; the platform provides it")
    palette = QPalette()
    for role, colour in (_DARK if theme == Theme.DARK else _LIGHT).items():
        palette.setColor(role, QColor(colour))
    for role in (Role.WindowText, Role.Text, Role.ButtonText):
        palette.setColor(Group.Disabled, role, QColor(_DISABLED_TEXT[theme]))
    return palette


def apply_theme(theme: Theme) -> None:
    """Make the whole application use `theme`."""
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        raise RuntimeError("apply_theme needs a running QApplication")
    hints = QGuiApplication.styleHints()
    if theme == Theme.SYSTEM:
        if hasattr(hints, "unsetColorScheme"):  # Qt 6.8+
            hints.unsetColorScheme()
        QApplication.setPalette(QPalette())  # back to the platform's own
        return
    if hasattr(hints, "setColorScheme"):  # Qt 6.8+
        scheme = Qt.ColorScheme.Dark if theme == Theme.DARK else Qt.ColorScheme.Light
        hints.setColorScheme(scheme)
    QApplication.setPalette(palette_for(theme))


def is_dark(palette: QPalette) -> bool:
    """Whether text is light on dark, whatever theme produced the palette."""
    return palette.color(Role.Base).lightness() < palette.color(Role.Text).lightness()
