"""`edgekit report`: bench results → one self-contained HTML page and a Markdown summary."""
