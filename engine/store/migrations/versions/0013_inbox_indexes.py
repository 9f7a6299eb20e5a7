"""the inbox is filtered, counted and paged in SQL

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29

One index in the inbox's order: pending items of the person's tenants, newest
first, with the id that breaks ties, so the page's ids and the count come from
the index without reading a row.
"""

from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_approvals_inbox', 'approvals', ['status', 'tenant', 'created_at', 'approval_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_approvals_inbox', table_name='approvals')
