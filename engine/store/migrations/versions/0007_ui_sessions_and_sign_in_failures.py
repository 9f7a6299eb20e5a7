"""browser sessions held on the server, failed sign-ins

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table('ui_sessions',
    sa.Column('session_hash', _STR(), nullable=False),
    sa.Column('user', _STR(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('ended_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('session_hash')
    )
    with op.batch_alter_table('ui_sessions', schema=None) as batch_op:
        for column in ('user', 'created_at'):
            batch_op.create_index(batch_op.f(f'ix_ui_sessions_{column}'), [column], unique=False)
    op.create_table('sign_in_failures',
    sa.Column('failure_id', sa.Integer(), nullable=False),
    sa.Column('user', _STR(), nullable=False),
    sa.Column('address', _STR(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('failure_id')
    )
    with op.batch_alter_table('sign_in_failures', schema=None) as batch_op:
        for column in ('user', 'address', 'at'):
            batch_op.create_index(batch_op.f(f'ix_sign_in_failures_{column}'), [column], unique=False)


def downgrade() -> None:
    op.drop_table('sign_in_failures')
    op.drop_table('ui_sessions')
