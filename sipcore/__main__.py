from sipcore.cli import run

run()
