"""workflow evaluations: a dataset run against a workflow version, and each of its cases

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString
_TIME = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table('eval_runs',
    sa.Column('eval_id', _STR(), nullable=False),
    sa.Column('comparison', _STR(), nullable=True),
    sa.Column('label', _STR(), nullable=False),
    sa.Column('dataset', _STR(), nullable=False),
    sa.Column('dataset_hash', _STR(), nullable=False),
    sa.Column('workflow', _STR(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('definition_hash', _STR(), nullable=False),
    sa.Column('run_workflow', _STR(), nullable=False),
    sa.Column('run_definition_hash', _STR(), nullable=False),
    sa.Column('tenant', _STR(), nullable=False),
    sa.Column('started_by', _STR(), nullable=False),
    sa.Column('cases', sa.Integer(), nullable=False),
    sa.Column('passed', sa.Integer(), nullable=False),
    sa.Column('success_rate', sa.Float(), nullable=False),
    sa.Column('cost', sa.Float(), nullable=False),
    sa.Column('cost_per_success', sa.Float(), nullable=True),
    sa.Column('escalations', sa.Integer(), nullable=False),
    sa.Column('started_at', _TIME(), nullable=False),
    sa.Column('finished_at', _TIME(), nullable=False),
    sa.PrimaryKeyConstraint('eval_id')
    )
    with op.batch_alter_table('eval_runs', schema=None) as batch_op:
        for column in ('comparison', 'dataset', 'workflow', 'tenant', 'started_at'):
            batch_op.create_index(batch_op.f(f'ix_eval_runs_{column}'), [column], unique=False)
    op.create_table('eval_cases',
    sa.Column('eval_id', _STR(), nullable=False),
    sa.Column('case_id', _STR(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('run_id', _STR(), nullable=True),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('failures', sa.JSON(), nullable=True),
    sa.Column('status', _STR(), nullable=False),
    sa.Column('reason', _STR(), nullable=True),
    sa.Column('cost', sa.Float(), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=False),
    sa.Column('steps', sa.Integer(), nullable=False),
    sa.Column('escalations', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['eval_id'], ['eval_runs.eval_id'], ),
    sa.PrimaryKeyConstraint('eval_id', 'case_id')
    )


def downgrade() -> None:
    op.drop_table('eval_cases')
    with op.batch_alter_table('eval_runs', schema=None) as batch_op:
        for column in ('comparison', 'dataset', 'workflow', 'tenant', 'started_at'):
            batch_op.drop_index(batch_op.f(f'ix_eval_runs_{column}'))
    op.drop_table('eval_runs')
