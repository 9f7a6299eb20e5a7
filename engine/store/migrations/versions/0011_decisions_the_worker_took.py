"""decisions a worker verified are recorded before they count, also those no door queued

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-12

A worker records each decision it verifies in ``queued_decisions`` (under the
assertion's id) before counting it, so a door that queues the same decision
afterwards cannot withdraw it and tell the person it did not count.
``door_queued`` tells the rows a door queued (all rows so far) from those only
the worker recorded, which the inbox does not show.
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('queued_decisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('door_queued', sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table('queued_decisions', schema=None) as batch_op:
        batch_op.drop_column('door_queued')
