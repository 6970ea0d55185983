import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import marimo as mo

    return (mo,)


@app.cell
def _(mo):
    add_one = mo.ui.button(value=0, on_click=lambda count: count + 1, label="Add one")
    add_one  # noqa: B018 (marimo shows a cell's last expression)
    return (add_one,)


@app.cell
def _(add_one, mo):
    mo.md(f"""
    marimo says {6 * 7}, clicked {add_one.value} times
    """)
    return


if __name__ == "__main__":
    app.run()
