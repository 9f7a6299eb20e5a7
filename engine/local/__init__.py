"""The local stack: processes it launches, the dev chain, the scripted model and the demo."""
