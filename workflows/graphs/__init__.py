"""Custom graphs for Python workflows, built on the same boundary nodes."""
