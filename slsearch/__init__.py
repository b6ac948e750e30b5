"""slsearch: a search engine for sign-language video."""

__version__ = "0.1.0"
