import pytest

from tests.fake_bigquery import FakeBigQuery


@pytest.fixture
def fake_bigquery():
    """A fake BigQuery REST server on 127.0.0.1 with no tables yet; see tests/fake_bigquery.py."""
    server = FakeBigQuery().start()
    yield server
    server.stop()
