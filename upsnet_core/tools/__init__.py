"""Command-line tools: predict, benchmark, demo."""
