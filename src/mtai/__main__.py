from mtai.cli import app

app()
