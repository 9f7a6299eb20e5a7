"""policy decisions: in time order for shadow evaluation, and a shadow policy's decision beside each

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29

``airlock policy shadow`` reads recorded decisions in (created_at, decision_id)
order, page by page from an index. A workflow's ``shadow_policy`` decides each
call too: its package, outcome and whole decision sit beside the primary one.
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_index('ix_policy_decisions_time', 'policy_decisions', ['created_at', 'decision_id'], unique=False)
    with op.batch_alter_table('policy_decisions') as batch:
        batch.add_column(sa.Column('shadow_package', _STR(), nullable=True))
        batch.add_column(sa.Column('shadow_outcome', _STR(), nullable=True))
        batch.add_column(sa.Column('shadow_result', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('policy_decisions') as batch:
        batch.drop_column('shadow_result')
        batch.drop_column('shadow_outcome')
        batch.drop_column('shadow_package')
    op.drop_index('ix_policy_decisions_time', table_name='policy_decisions')
