"""the support tools' outbox (tools/support.py): emails sent from the support desk

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table('support_emails',
    sa.Column('email_id', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', _STR(), nullable=False),
    sa.Column('recipient', _STR(), nullable=False),
    sa.Column('subject', _STR(), nullable=False),
    sa.Column('body', _STR(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('email_id'),
    sa.UniqueConstraint('idempotency_key')
    )
    with op.batch_alter_table('support_emails', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_support_emails_recipient'), ['recipient'], unique=False)


def downgrade() -> None:
    op.drop_table('support_emails')
