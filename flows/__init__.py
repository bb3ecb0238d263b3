"""One module per flow: composes tasks, owns parameters and artifacts."""
