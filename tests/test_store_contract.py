"""The run store's contract suite (tests/store_contract.py), run with the study in each storage a run can use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres import postgres_server
from tests.store_contract import RunStoreContract


class TestRunStoreWithSQLite(RunStoreContract):
    """The default: the study in the run's own SQLite file (``study.db``, named relative to the run)."""

    @pytest.fixture
    def storage(self) -> str | None:
        return None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


class TestRunStoreWithPostgreSQL(RunStoreContract):
    """``--storage postgresql+psycopg2://...``: the study in a shared database, under a name of its own."""

    @pytest.fixture
    def storage(self, postgres_url: str) -> str | None:
        return postgres_url
