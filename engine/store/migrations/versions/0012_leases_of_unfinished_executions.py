"""a lease names the execution that began under it

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29

An expired lease on an account is taken over only when no execution began
under it, or that execution finished, or its run is closed: the retry of an
execution that began resumes it without a re-check, so nothing else may act
on the account in between.
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('action_locks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('execution_key', sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('action_locks', schema=None) as batch_op:
        batch_op.drop_column('execution_key')
