"""chain senders and transactions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('chain_senders',
    sa.Column('chain_id', sa.Integer(), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('locked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('chain_id', 'address')
    )
    op.create_table('chain_transactions',
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('chain_id', sa.Integer(), nullable=False),
    sa.Column('sender', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('nonce', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('raw_tx', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('tx', sa.JSON(), nullable=True),
    sa.Column('action', sa.JSON(), nullable=True),
    sa.Column('asset', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('amount_units', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('block_number', sa.Integer(), nullable=True),
    sa.Column('gas_used', sa.Integer(), nullable=True),
    sa.Column('revert_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('broadcasts', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('mined_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('idempotency_key'),
    sa.UniqueConstraint('tx_hash')
    )
    with op.batch_alter_table('chain_transactions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chain_transactions_asset'), ['asset'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_transactions_chain_id'), ['chain_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_transactions_sender'), ['sender'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('chain_transactions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chain_transactions_sender'))
        batch_op.drop_index(batch_op.f('ix_chain_transactions_chain_id'))
        batch_op.drop_index(batch_op.f('ix_chain_transactions_asset'))

    op.drop_table('chain_transactions')
    op.drop_table('chain_senders')
