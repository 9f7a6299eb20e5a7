"""definitions the worker resolved, verified assertions, decision digests, user tenants, action locks

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table('workflow_definitions',
    sa.Column('definition_hash', _STR(), nullable=False),
    sa.Column('workflow', _STR(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=True),
    sa.Column('first_seen', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('definition_hash')
    )
    with op.batch_alter_table('workflow_definitions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workflow_definitions_workflow'), ['workflow'], unique=False)
    op.create_table('person_assertions',
    sa.Column('jti', _STR(), nullable=False),
    sa.Column('run_id', _STR(), nullable=False),
    sa.Column('approval_id', _STR(), nullable=False),
    sa.Column('idempotency_key', _STR(), nullable=False),
    sa.Column('digest', _STR(), nullable=False),
    sa.Column('action', _STR(), nullable=False),
    sa.Column('subject', _STR(), nullable=False),
    sa.Column('roles', sa.JSON(), nullable=True),
    sa.Column('used_by', _STR(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('jti')
    )
    with op.batch_alter_table('person_assertions', schema=None) as batch_op:
        for column in ('run_id', 'approval_id', 'idempotency_key'):
            batch_op.create_index(batch_op.f(f'ix_person_assertions_{column}'), [column], unique=False)
    op.create_table('action_locks',
    sa.Column('lock_key', _STR(), nullable=False),
    sa.Column('holder', _STR(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('acquired_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('lock_key')
    )
    with op.batch_alter_table('policy_decisions', schema=None) as batch_op:
        for column in ('digest', 'idempotency_key', 'approval_id'):
            batch_op.add_column(sa.Column(column, _STR(), nullable=True))
            batch_op.create_index(batch_op.f(f'ix_policy_decisions_{column}'), [column], unique=False)
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('definition_hash', _STR(), nullable=True))
        batch_op.add_column(sa.Column('workflow_run_id', _STR(), nullable=True))
    with op.batch_alter_table('tool_executions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('digest', _STR(), nullable=True))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tenants', sa.JSON(), nullable=True))
    op.execute("UPDATE users SET tenants = '[\"default\"]' WHERE tenants IS NULL")


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('tenants')
    with op.batch_alter_table('tool_executions', schema=None) as batch_op:
        batch_op.drop_column('digest')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('workflow_run_id')
        batch_op.drop_column('definition_hash')
    with op.batch_alter_table('policy_decisions', schema=None) as batch_op:
        for column in ('digest', 'idempotency_key', 'approval_id'):
            batch_op.drop_index(batch_op.f(f'ix_policy_decisions_{column}'))
            batch_op.drop_column(column)
    op.drop_table('action_locks')
    op.drop_table('person_assertions')
    op.drop_table('workflow_definitions')
