"""This project's tools (named in workflow specs as ``tools.<module>:<function>``)."""
