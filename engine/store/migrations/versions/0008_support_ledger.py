"""the support tools' ledger (tools/support.py): orders and refunds

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

Until now ``tools.support`` created these tables itself on first use, so a
database may already have them; they are created here only where missing.
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if 'support_orders' not in existing:
        op.create_table('support_orders',
        sa.Column('order_id', _STR(), nullable=False),
        sa.Column('customer_id', _STR(), nullable=False),
        sa.Column('total', sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column('currency', _STR(), nullable=False),
        sa.Column('item', _STR(), nullable=False),
        sa.PrimaryKeyConstraint('order_id')
        )
        with op.batch_alter_table('support_orders', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_support_orders_customer_id'), ['customer_id'], unique=False)
    if 'support_refunds' not in existing:
        op.create_table('support_refunds',
        sa.Column('refund_id', sa.Integer(), nullable=False),
        sa.Column('idempotency_key', _STR(), nullable=False),
        sa.Column('order_id', _STR(), nullable=False),
        sa.Column('amount', sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column('currency', _STR(), nullable=False),
        sa.Column('reason', _STR(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('refund_id'),
        sa.UniqueConstraint('idempotency_key')
        )
        with op.batch_alter_table('support_refunds', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_support_refunds_order_id'), ['order_id'], unique=False)


def downgrade() -> None:
    op.drop_table('support_refunds')
    op.drop_table('support_orders')
