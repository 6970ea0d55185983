"""A plain Bokeh server app for the browser tests: a button whose Python callback, run on the
server, changes a Div, so the new text shows only after a round trip over Bokeh's WebSocket."""

from __future__ import annotations

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Button, Div

clicks = {"count": 0}
div = Div(text="Clicked 0 times", css_classes=["clicks"])
button = Button(label="Click me", css_classes=["click-me"])


def _clicked() -> None:
    clicks["count"] += 1
    div.text = f"Clicked {clicks['count']} times"


button.on_click(_clicked)
curdoc().add_root(column(button, div))
curdoc().title = "Bokeh behind rproxy"
