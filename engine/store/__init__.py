"""The audit trail and run index (SQLModel; SQLite or PostgreSQL)."""
