"""Settings: env vars, defaults, and a README entry for every one."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from engine.config import Settings
from tests.helpers import ROOT


def _env_names(model: type[BaseModel], prefix: str) -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def test_every_setting_is_documented_in_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [n for n in _env_names(Settings, "AIRLOCK_") if f"`{n}`" not in readme]
    assert missing == []


def test_nested_env_vars_and_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRLOCK_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("AIRLOCK_TEMPORAL__ADDRESS", "temporal.example:7233")
    monkeypatch.setenv("AIRLOCK_OPA__TIMEOUT_S", "0.5")
    settings = Settings()
    assert settings.temporal.address == "temporal.example:7233" and settings.opa.timeout_s == 0.5
    assert settings.workflows_dir == tmp_path / "workflows"
    assert settings.db_url == f"sqlite:///{tmp_path / '.airlock' / 'airlock.db'}"


def test_postgres_url_uses_psycopg3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_DATABASE_URL", "postgresql://u:p@db/airlock")
    assert Settings().db_url == "postgresql+psycopg://u:p@db/airlock"


def test_secrets_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_TEMPORAL__API_KEY", "tk-very-secret")
    settings = Settings()
    assert "tk-very-secret" not in repr(settings) and "tk-very-secret" not in settings.model_dump_json()
    assert settings.temporal.api_key and settings.temporal.api_key.get_secret_value() == "tk-very-secret"


def test_percentiles_are_nearest_rank() -> None:
    from engine.store.stats import percentile

    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (50.0, 95.0, 100.0)


def test_an_assertion_must_outlive_the_wait_for_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decision no worker took in time is queued about ``decision_wait_s`` after its assertion was signed and
    judged as of then: an assertion that expired sooner would have every queued decision refused."""
    from pydantic import ValidationError

    monkeypatch.setenv("AIRLOCK_AUTH__ASSERTION_TTL_S", "5")
    monkeypatch.setenv("AIRLOCK_TEMPORAL__DECISION_WAIT_S", "30")
    with pytest.raises(ValidationError, match=r"AIRLOCK_AUTH__ASSERTION_TTL_S \(5\) must be at least "
                                              r"AIRLOCK_TEMPORAL__DECISION_WAIT_S \(30\)"):
        Settings()
    monkeypatch.setenv("AIRLOCK_TEMPORAL__DECISION_WAIT_S", "5")
    assert (Settings().auth.assertion_ttl_s, Settings().temporal.decision_wait_s) == (5, 5.0)
    monkeypatch.delenv("AIRLOCK_AUTH__ASSERTION_TTL_S")
    monkeypatch.setenv("AIRLOCK_TEMPORAL__DECISION_WAIT_S", "60")
    assert Settings().temporal.decision_wait_s == 60  # the longest wait fits the default lifetime (120 s)


def test_secrets_can_come_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A deployment mounts secrets as files (compose or Kubernetes secrets) rather than putting them in the
    environment."""
    from pydantic import ValidationError

    from engine.errors import InputError
    from engine.ui.auth import secret_key

    (tmp_path / "database-url").write_text("postgresql://airlock:pw@db/airlock\n")
    (tmp_path / "session-secret").write_text("shared-by-every-ui-instance\n")
    monkeypatch.setenv("AIRLOCK_DATABASE_URL_FILE", str(tmp_path / "database-url"))
    monkeypatch.setenv("AIRLOCK_UI__SECRET_KEY_FILE", str(tmp_path / "session-secret"))
    settings = Settings()
    assert settings.db_url == "postgresql+psycopg://airlock:pw@db/airlock"
    assert secret_key(settings) == "shared-by-every-ui-instance"
    monkeypatch.setenv("AIRLOCK_DATABASE_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValidationError, match=r"AIRLOCK_DATABASE_URL_FILE: cannot read .*missing"):
        Settings()
    monkeypatch.delenv("AIRLOCK_DATABASE_URL_FILE")
    monkeypatch.setenv("AIRLOCK_UI__SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(InputError, match="AIRLOCK_UI__SECRET_KEY_FILE: cannot read"):
        secret_key(Settings(state_dir=tmp_path / "state"))
