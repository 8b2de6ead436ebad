"""Files shipped with writer-app: icons and the demo model. Installed as writer_app.resources."""
