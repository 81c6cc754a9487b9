"""darwin-release: breed a child LLM from two Hub parents by evolutionary search and release it."""

__version__ = "0.1.0"
