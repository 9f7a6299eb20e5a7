"""Tool implementations with typed argument schemas."""
