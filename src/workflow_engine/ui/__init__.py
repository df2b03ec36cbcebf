"""The web dashboard at `/ui` (docs/ui.md): one HTML shell for every page and the static ES
modules, styles and icon it loads. The dashboard is only a client of the public API; nothing
here reads the database or knows who is asking."""
