"""A small Shiny for Python app: a text input, and the server's greeting for it."""

from shiny import App, Inputs, Outputs, Session, render, ui

app_ui = ui.page_fluid(
    ui.h2("rproxy shiny test"),
    ui.input_text("name", "Name", "world"),
    ui.output_code("greeting"),
)


def server(input: Inputs, output: Outputs, session: Session) -> None:
    @render.code
    def greeting() -> str:
        return f"Hello, {input.name()}! (from shiny)"


app = App(app_ui, server)
