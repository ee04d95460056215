"""The table contract, the SQL checks and the code agree with each other."""

from __future__ import annotations

import re

from prism_assets.core.contracts import CONTRACTS, REASON_CODES
from prism_assets.defs.sql_checks import load_sql_checks
from prism_assets_tests.conftest import EXPECTED_QUARANTINE


def test_quarantine_reasons_are_one_list_everywhere():
    [sql] = [c.sql for c in load_sql_checks() if c.asset == "quarantine" and c.name == "known_reason"]
    listed = re.findall(r"'([^']+)'", sql[sql.index("NOT IN"):])
    assert tuple(listed) == REASON_CODES
    # the malformed fixture exercises every reason but two: control characters are covered by test_bad_input, and
    # "unexpected error" is the catch-all for a row shape no adapter anticipated (no known row reaches it)
    assert set(EXPECTED_QUARANTINE) | {"control characters", "unexpected error"} == set(REASON_CODES)


def test_every_table_has_a_schema_check_and_every_check_targets_a_table():
    checks = load_sql_checks()
    assert {c.asset for c in checks if c.name == "schema"} == set(CONTRACTS)
    assert {c.asset for c in checks} <= set(CONTRACTS)
    assert all(c.description != c.name for c in checks)  # every file documents what it guarantees


def test_contract_names_the_columns_later_stages_rely_on():
    for table in ("raw_prompts", "prompt_pool", "quarantine"):
        assert "source_dataset" in CONTRACTS[table].names
    assert {"id", "skill_bucket", "ctx_bucket"} <= set(CONTRACTS["bucket_labels"].names)
    assert "reason" in CONTRACTS["quarantine"].names and "id" in CONTRACTS["prompt_pool"].names
