"""saved shadow evaluations: a report, and each changed decision with its run's tenant

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table('shadow_reports',
    sa.Column('report_id', _STR(), nullable=False),
    sa.Column('label', _STR(), nullable=False),
    sa.Column('revision', _STR(), nullable=False),
    sa.Column('since', _STR(), nullable=False),
    sa.Column('workflow', _STR(), nullable=True),
    sa.Column('decided', sa.Integer(), nullable=False),
    sa.Column('same', sa.Integer(), nullable=False),
    sa.Column('reasons_changed', sa.Integer(), nullable=False),
    sa.Column('transitions', sa.JSON(), nullable=True),
    sa.Column('failing', sa.JSON(), nullable=True),
    sa.Column('saved_by', _STR(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('report_id')
    )
    op.create_index(op.f('ix_shadow_reports_created_at'), 'shadow_reports', ['created_at'], unique=False)
    op.create_table('shadow_changes',
    sa.Column('report_id', _STR(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('decision_id', _STR(), nullable=False),
    sa.Column('run_id', _STR(), nullable=False),
    sa.Column('tenant', _STR(), nullable=True),
    sa.Column('workflow', _STR(), nullable=True),
    sa.Column('tool', _STR(), nullable=False),
    sa.Column('args', sa.JSON(), nullable=True),
    sa.Column('old', _STR(), nullable=False),
    sa.Column('new', _STR(), nullable=False),
    sa.Column('old_reasons', sa.JSON(), nullable=True),
    sa.Column('new_reasons', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('report_id', 'position')
    )
    op.create_index('ix_shadow_changes_page', 'shadow_changes', ['report_id', 'tenant', 'position'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_shadow_changes_page', table_name='shadow_changes')
    op.drop_table('shadow_changes')
    op.drop_index(op.f('ix_shadow_reports_created_at'), table_name='shadow_reports')
    op.drop_table('shadow_reports')
