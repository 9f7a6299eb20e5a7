"""decisions accepted for delivery while no worker was there, and what became of them

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table('queued_decisions',
    sa.Column('key', _STR(), nullable=False),
    sa.Column('approval_id', _STR(), nullable=False),
    sa.Column('run_id', _STR(), nullable=False),
    sa.Column('by', _STR(), nullable=False),
    sa.Column('action', _STR(), nullable=False),
    sa.Column('digest', _STR(), nullable=False),
    sa.Column('comment', _STR(), nullable=True),
    sa.Column('args', sa.JSON(), nullable=True),
    sa.Column('source', _STR(), nullable=True),
    sa.Column('status', _STR(), nullable=False),
    sa.Column('reason', _STR(), nullable=True),
    sa.Column('result', _STR(), nullable=True),
    sa.Column('queued_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('settled_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('queued_decisions', schema=None) as batch_op:
        for column in ('approval_id', 'run_id', 'status'):
            batch_op.create_index(batch_op.f(f'ix_queued_decisions_{column}'), [column], unique=False)


def downgrade() -> None:
    op.drop_table('queued_decisions')
