from slsearch.cli import run

run()
