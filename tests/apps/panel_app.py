"""A small Panel app for the browser tests: a slider whose value a server-side callback copies
into a text pane, so a change shows only after a round trip over Panel's WebSocket."""

from __future__ import annotations

import panel as pn

slider = pn.widgets.IntSlider(name="Level", start=0, end=10, value=3, css_classes=["level"])
echo = pn.pane.Markdown("Server says: 3", css_classes=["echo"])
button = pn.widgets.Button(name="Add one", button_type="primary", css_classes=["add-one"])


def _copy(event: object) -> None:
    echo.object = f"Server says: {slider.value}"


def _add_one(event: object) -> None:
    slider.value = min(slider.end, slider.value + 1)


slider.param.watch(_copy, "value")
button.on_click(_add_one)

pn.Column("# Panel behind rproxy", slider, button, echo).servable(title="Panel behind rproxy")
