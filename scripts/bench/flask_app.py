"""The minimal Flask app of the gunicorn benchmark: one route, a short body."""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello, World!"
