"""why each policy decision was made: first proposal, an edit, a re-decision, the re-check before execution

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29

Every decision is its own row already; ``cause`` says what made the boundary
decide again, so the record answers "why was this decided twice".
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('policy_decisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cause', sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('policy_decisions', schema=None) as batch_op:
        batch_op.drop_column('cause')
